-- Conflicting copies of one event (same source and id, other content: another rep, day, type,
-- deal or amount) are kept apart, so the history holds every copy the pipeline judged and
-- recomputations choose the same one it counts (streams.engine.events.Event.copy_digest: the
-- smallest digest). `copy` is that digest; identical copies still collapse. Rows written
-- before this migration have copy 0 and collapse per (source, id) as before.
ALTER TABLE activity_events
    ADD COLUMN IF NOT EXISTS copy UInt64 COMMENT 'Event.copy_digest: which copy of (source, id)',
    MODIFY ORDER BY (source, id, copy);

ALTER TABLE credits
    ADD COLUMN IF NOT EXISTS copy UInt64 COMMENT 'Event.copy_digest of the crediting event',
    MODIFY ORDER BY (rep_id, metric, time, source, id, copy);

-- The conflicting copies that lose to a smaller digest, and the events that count: every row of
-- activity_events but those. Explanations, reconciliations and the rep board read through them;
-- replaying the history into the engine reads the table itself (the engine judges copies).
CREATE VIEW IF NOT EXISTS losing_copies AS
SELECT source, id, arrayJoin(losers) AS copy
FROM (
    SELECT source, id, arrayPopFront(arraySort(groupUniqArray(copy))) AS losers
    FROM activity_events
    GROUP BY source, id
    HAVING uniqExact(copy) > 1
);

CREATE VIEW IF NOT EXISTS counted_events AS
SELECT * FROM activity_events
WHERE (source, id, copy) NOT IN (SELECT source, id, copy FROM losing_copies);
