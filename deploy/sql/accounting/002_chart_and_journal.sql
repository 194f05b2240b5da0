-- 002: chart of accounts, journal entries and journal lines, with the balance rule enforced at commit.

CREATE TABLE accounts (
    code        text PRIMARY KEY CHECK (code <> ''),
    name        text,
    chart       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One journal entry per deterministic id (derived by the posting engine from the source document
-- and version, never from a Kafka offset): "already exists" is success (CDC-09).
CREATE TABLE journal_entries (
    entry_id          text PRIMARY KEY CHECK (entry_id <> ''),
    kind              text NOT NULL CHECK (kind <> ''),
    accounting_date   date NOT NULL,
    document_type     text NOT NULL,
    document_number   text NOT NULL,
    document_version  bigint NOT NULL CHECK (document_version >= 0),  -- may be the commit LSN
    document_id       text NOT NULL,
    rule              text NOT NULL,
    reverses          text,               -- the entry a reversal cancels
    exchange_rate     numeric,
    original_currency text CHECK (original_currency ~ '^[A-Z]{3}$'),
    -- source trace: where in the sales database's WAL the posted change was captured
    source_lsn        bigint CHECK (source_lsn >= 0),
    source_txid       bigint,
    source_commit_at  timestamptz,
    -- sha256 of the entry's canonical form (computed by the writer): a re-delivered id with other
    -- content is detected instead of silently ignored
    content_sha256    text NOT NULL CHECK (length(content_sha256) = 64),
    ingested_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journal_entries_document ON journal_entries (document_type, document_number, document_version);

-- Amounts are NUMERIC (exact); scale at most 4. Red storno (negative amounts on the usual side) is
-- allowed; a line carries one side only.
CREATE TABLE journal_lines (
    entry_id   text NOT NULL REFERENCES journal_entries (entry_id),
    line_no    integer NOT NULL CHECK (line_no >= 1),
    account    text NOT NULL REFERENCES accounts (code),
    debit      numeric NOT NULL DEFAULT 0 CHECK (scale(debit) <= 4),
    credit     numeric NOT NULL DEFAULT 0 CHECK (scale(credit) <= 4),
    currency   text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    branch     text,
    warehouse  text,
    customer   text,
    sku        text,
    open_item  text,                      -- receivable document number a receivable line concerns
    advance    text,                      -- payment number whose advance the line concerns
    PRIMARY KEY (entry_id, line_no),
    CONSTRAINT journal_lines_one_side CHECK (debit = 0 OR credit = 0)
);
CREATE INDEX journal_lines_account ON journal_lines (account);

-- The balance rule: per entry and currency, sum(debit) = sum(credit), and at least one line.
-- Checked at COMMIT (deferred), so an entry's lines may arrive in any order within the
-- transaction. Every inserted line re-checks its entry (this also covers a line added later to
-- an old entry); every inserted entry checks that it has lines.
CREATE FUNCTION assert_entry_balanced() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad record;
BEGIN
    SELECT currency, sum(debit) AS debit, sum(credit) AS credit INTO bad
      FROM journal_lines WHERE entry_id = NEW.entry_id
     GROUP BY currency HAVING sum(debit) <> sum(credit)
     ORDER BY currency LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % is unbalanced in %: debit % <> credit %',
            NEW.entry_id, bad.currency, bad.debit, bad.credit
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced';
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION assert_entry_has_lines() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM journal_lines WHERE entry_id = NEW.entry_id) THEN
        RAISE EXCEPTION 'journal entry % has no lines', NEW.entry_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_has_lines';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER journal_entry_has_lines
    AFTER INSERT ON journal_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION assert_entry_has_lines();

CREATE CONSTRAINT TRIGGER journal_entry_balanced
    AFTER INSERT ON journal_lines
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION assert_entry_balanced();

CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER journal_lines_append_only BEFORE UPDATE OR DELETE ON journal_lines
    FOR EACH ROW EXECUTE FUNCTION reject_change();

-- Privileges: the writer appends, the reporting role reads. Nobody but the owner truncates.
-- Default privileges of the stack may have granted more: start from nothing.
REVOKE ALL ON accounts, journal_entries, journal_lines FROM PUBLIC, :"writer_role", :"reporting_role";
GRANT SELECT, INSERT ON accounts, journal_entries, journal_lines TO :"writer_role";
GRANT SELECT ON accounts, journal_entries, journal_lines TO :"reporting_role";
