-- A task whose approver was deactivated while it was open, and who had no out-of-office
-- delegate to hand it to (issue 8, item 3): withdrawn from its step, which is re-evaluated
-- without it.
ALTER TABLE approval_tasks DROP CONSTRAINT approval_tasks_state_check;
ALTER TABLE approval_tasks ADD CONSTRAINT approval_tasks_state_check
    CHECK (state IN ('waiting', 'asked', 'approved', 'rejected', 'superseded', 'withdrawn'));
