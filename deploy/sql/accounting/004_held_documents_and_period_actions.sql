-- 004: the held queue and the audit of period actions, both as append-only event logs.

-- A document is held (e.g. reason 'period_locked') and later released by an authorised user.
-- The queue today = documents whose latest event is 'held' (view held_queue).
CREATE TABLE held_documents (
    event_id          text PRIMARY KEY CHECK (event_id <> ''),
    action            text NOT NULL CHECK (action IN ('held', 'released')),
    document_key      text NOT NULL,      -- "<type>:<number>"
    document_version  bigint,
    reason            text,
    detail            text,
    actor             text,
    occurred_at       timestamptz,        -- when it was held / released (source time)
    payload           jsonb,
    ingested_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (action <> 'held' OR reason IS NOT NULL)
);
CREATE INDEX held_documents_document ON held_documents (document_key, occurred_at);

CREATE VIEW held_queue AS
SELECT latest.*
  FROM (SELECT DISTINCT ON (document_key) *
          FROM held_documents
         ORDER BY document_key, COALESCE(occurred_at, ingested_at) DESC, action DESC) AS latest
 WHERE latest.action = 'held';

-- Every period lock, unlock and held-document release, with who and when.
CREATE TABLE period_actions (
    action_id         text PRIMARY KEY CHECK (action_id <> ''),
    action            text NOT NULL CHECK (action IN ('lock', 'unlock', 'release')),
    through_date      date,
    document_key      text,               -- the released document, "<type>:<number>"
    actor             text,               -- who (the authorised user), as the event says
    occurred_at       timestamptz,        -- when, as the event says (ingested_at otherwise)
    ingested_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (action = 'release' OR through_date IS NOT NULL),
    CHECK (action <> 'release' OR document_key IS NOT NULL)
);

CREATE TRIGGER held_documents_append_only BEFORE UPDATE OR DELETE ON held_documents
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER period_actions_append_only BEFORE UPDATE OR DELETE ON period_actions
    FOR EACH ROW EXECUTE FUNCTION reject_change();

-- Default privileges of the stack may have granted more: start from nothing.
REVOKE ALL ON held_documents, held_queue, period_actions FROM PUBLIC, :"writer_role", :"reporting_role";
GRANT SELECT, INSERT ON held_documents, period_actions TO :"writer_role";
GRANT SELECT ON held_documents, period_actions, held_queue TO :"writer_role", :"reporting_role";
