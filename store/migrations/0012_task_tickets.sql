-- Task tickets (issue 10, `ticket.create_task`): a `task` kind of ticket (`TASK-000001`), work
-- for a team on behalf of another ticket, linked to it by a `task_of` link (task -> parent).
-- Numbers need nothing: `ticket_counters` keeps one sequence per tenant and kind, whatever kind.

ALTER TABLE tickets DROP CONSTRAINT tickets_kind_check;
ALTER TABLE tickets ADD CONSTRAINT tickets_kind_check
    CHECK (kind IN ('incident', 'service_request', 'change', 'problem', 'task'));

ALTER TABLE ticket_links DROP CONSTRAINT ticket_links_kind_check;
ALTER TABLE ticket_links ADD CONSTRAINT ticket_links_kind_check
    CHECK (kind IN ('duplicate_of', 'blocked_by', 'caused_by', 'relates_to', 'task_of'));

-- The task a `ticket.create_task` step waits on, and the round (0, then one per admin retry of
-- the run) that last waited on it. Kept apart from `output`, which the run's bookkeeping clears
-- when a retry sets the step pending again: a retry must still find the task it may wait on
-- again (the rule is in `archer_workers::playbooks::tickets`).
ALTER TABLE playbook_steps
    ADD COLUMN task_ticket_id uuid,
    ADD COLUMN task_round integer,
    ADD CONSTRAINT playbook_steps_task CHECK ((task_ticket_id IS NULL) = (task_round IS NULL)),
    ADD CONSTRAINT playbook_steps_task_ticket FOREIGN KEY (tenant_id, task_ticket_id) REFERENCES tickets (tenant_id, id);

-- Steps waiting on a task opened before this migration: it is named in their output. (Those
-- tasks stay what they were opened as, service requests or incidents linked `relates_to`.)
UPDATE playbook_steps
   SET task_ticket_id = (output ->> 'task_ticket_id')::uuid, task_round = round
 WHERE output ? 'task_ticket_id' AND task_ticket_id IS NULL;
