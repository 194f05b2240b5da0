-- 001: the target schema's privileges and the append-only guard used by every ledger table.
-- :"schema", :"writer_role" and :"reporting_role" are psql-style variables: the runner
-- (salesledger.sinks.migrate) substitutes quoted identifiers from the settings (sink_role,
-- reporting_role); by hand: psql -v schema=ledger -v writer_role=sl_sink -v reporting_role=...

GRANT USAGE ON SCHEMA :"schema" TO :"writer_role", :"reporting_role";

-- Rows of the ledger are never changed or removed once written: a correction is a new entry.
CREATE FUNCTION reject_change() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only: % on %.% is not allowed',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
