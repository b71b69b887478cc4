-- The truth about lateness and breaches (issue 8, item 13).
--
-- Every SLA fact and escalation keeps two instants: when it was due and when Archer acted on
-- it. The columns were there; they now say so.
COMMENT ON COLUMN sla_events.at IS
    'The true instant the warning threshold or target was reached (business time), whenever it was recorded.';
COMMENT ON COLUMN sla_events.recorded_at IS
    'When Archer recorded the fact: later than `at` by the timer''s lag, or by a worker outage.';
COMMENT ON COLUMN sla_escalations.due_at IS
    'The instant the level''s trigger fell due (the warning, the breach, or the breach plus its delay).';
COMMENT ON COLUMN sla_escalations.fired_at IS
    'The instant the level was due to run: `due_at`, or later when escalation_cooldown held it back.';
COMMENT ON COLUMN sla_escalations.created_at IS
    'When the level actually ran (its activity claimed it): later than `fired_at` by the timer''s lag, the levels before it, or a worker outage.';

-- "Ever breached", per target: a breach stays findable after the ticket is cancelled, resolved
-- or rebuilt, because the facts are never deleted (compliance reports count them).
-- `GET /tickets?breached=` filters with EXISTS over the breach facts: for a ticket list ordered
-- by (tenant_id, created_at) the planner probes each candidate through the unique index on
-- (ticket_id, metric, cycle, kind); when breaches are few among a million tickets it starts
-- from this partial index instead (only breaches, not warnings, so it stays small) and joins
-- the tickets by primary key.
CREATE INDEX sla_events_breaches ON sla_events (tenant_id, metric, ticket_id) WHERE kind = 'breach';
