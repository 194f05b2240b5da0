-- 008: an unlock names no date (`salesledger period unlock` lifts the lock), and the current
-- lock is readable as a view.
ALTER TABLE period_actions DROP CONSTRAINT period_actions_check;
ALTER TABLE period_actions ADD CONSTRAINT period_actions_lock_has_date
    CHECK (action <> 'lock' OR through_date IS NOT NULL);

-- The lock in force: the latest lock or unlock (by when it was asked, then by when it was
-- stored). locked_through is NULL when the latest is an unlock or nothing was ever locked.
CREATE VIEW period_locks AS
SELECT CASE WHEN latest.action = 'lock' THEN latest.through_date END AS locked_through,
       latest.action, latest.actor, latest.occurred_at, latest.action_id
  FROM (SELECT * FROM period_actions
         WHERE action IN ('lock', 'unlock')
         ORDER BY COALESCE(occurred_at, ingested_at) DESC, ingested_at DESC
         LIMIT 1) AS latest;

REVOKE ALL ON period_locks FROM PUBLIC, :"writer_role", :"reporting_role";
GRANT SELECT ON period_locks TO :"writer_role", :"reporting_role";
