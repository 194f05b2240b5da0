-- 005: dead letters — inputs that could not be decoded, posted or stored, with the reason.
-- Mirrors salesledger.streams.deadletter.DeadLetter (schemas/dead_letter.v1.avsc). One row per
-- source record (topic, partition, offset): storing the same dead letter twice is a no-op.
-- Append-only except the resolution: status moves open -> resolved once, nothing else changes.
CREATE TABLE dead_letters (
    source_topic      text NOT NULL CHECK (source_topic <> ''),
    source_partition  integer NOT NULL CHECK (source_partition >= 0),
    source_offset     bigint NOT NULL CHECK (source_offset >= 0),
    reason            text NOT NULL CHECK (reason ~ '^[a-z][a-z0-9_]{0,63}$'),  -- stable code
    message           text NOT NULL,      -- for a human; for 'store_rejected' the database's error
    error_type        text NOT NULL DEFAULT '',
    document_id       text,
    record_key        bytea,              -- the original Kafka key and value, untouched
    payload           bytea,
    first_seen        timestamptz NOT NULL,
    status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at       timestamptz,
    resolution        text,
    PRIMARY KEY (source_topic, source_partition, source_offset),
    CHECK ((status = 'open') = (resolved_at IS NULL))
);
CREATE INDEX dead_letters_open ON dead_letters (created_at) WHERE status = 'open';

CREATE FUNCTION guard_dead_letter_update() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'dead letters are kept: DELETE is not allowed'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.status <> 'open' OR NEW.status <> 'resolved' THEN
        RAISE EXCEPTION 'dead letter %/%/%: status may only move open -> resolved (was %, now %)',
            OLD.source_topic, OLD.source_partition, OLD.source_offset, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF (NEW.source_topic, NEW.source_partition, NEW.source_offset, NEW.reason, NEW.message,
        NEW.error_type, NEW.document_id, NEW.record_key, NEW.payload, NEW.first_seen,
        NEW.created_at)
       IS DISTINCT FROM
       (OLD.source_topic, OLD.source_partition, OLD.source_offset, OLD.reason, OLD.message,
        OLD.error_type, OLD.document_id, OLD.record_key, OLD.payload, OLD.first_seen,
        OLD.created_at) THEN
        RAISE EXCEPTION 'dead letter %/%/%: only status, resolved_at and resolution may change',
            OLD.source_topic, OLD.source_partition, OLD.source_offset
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER dead_letters_guard BEFORE UPDATE OR DELETE ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION guard_dead_letter_update();

-- Default privileges of the stack may have granted more: start from nothing.
REVOKE ALL ON dead_letters FROM PUBLIC, :"writer_role", :"reporting_role";
GRANT SELECT, INSERT ON dead_letters TO :"writer_role";
GRANT UPDATE (status, resolved_at, resolution) ON dead_letters TO :"writer_role";
GRANT SELECT ON dead_letters TO :"reporting_role";
