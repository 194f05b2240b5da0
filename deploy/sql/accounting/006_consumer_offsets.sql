-- 006: the consumer offsets of the sink, stored in the same transaction as the rows they cover.
-- next_offset is the offset of the next record to read. It only increases: the store, not Kafka's
-- group offsets, is the authority a restarted sink resumes from (CDC-15).
CREATE TABLE consumer_offsets (
    consumer_group    text NOT NULL CHECK (consumer_group <> ''),
    topic             text NOT NULL CHECK (topic <> ''),
    partition         integer NOT NULL CHECK (partition >= 0),
    next_offset       bigint NOT NULL CHECK (next_offset >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

CREATE FUNCTION guard_offset_forward() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'consumer offsets are never deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.consumer_group, NEW.topic, NEW.partition)
       IS DISTINCT FROM (OLD.consumer_group, OLD.topic, OLD.partition) THEN
        RAISE EXCEPTION 'consumer offset key may not change' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.next_offset < OLD.next_offset THEN
        RAISE EXCEPTION 'consumer offset of %/%[%] may not go backwards: % -> %',
            OLD.consumer_group, OLD.topic, OLD.partition, OLD.next_offset, NEW.next_offset
            USING ERRCODE = 'check_violation', CONSTRAINT = 'consumer_offsets_forward';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER consumer_offsets_forward BEFORE UPDATE OR DELETE ON consumer_offsets
    FOR EACH ROW EXECUTE FUNCTION guard_offset_forward();

-- Default privileges of the stack may have granted more: start from nothing.
REVOKE ALL ON consumer_offsets FROM PUBLIC, :"writer_role", :"reporting_role";
GRANT SELECT, INSERT ON consumer_offsets TO :"writer_role";
GRANT UPDATE (next_offset, updated_at) ON consumer_offsets TO :"writer_role";
GRANT SELECT ON consumer_offsets TO :"reporting_role";
