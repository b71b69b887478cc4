-- One change, one instant (issue 8, item 12): an audit row is stamped with its transaction's
-- instant (`now()`), the same instant as the row it audits (`updated_at = now()`), the
-- workflow signal it goes with and every SLA computation made from it. (It was
-- `clock_timestamp()`, a few milliseconds later, so a response computed from the audit
-- history and the workflow computing from the signal disagreed.)
ALTER TABLE audit_log ALTER COLUMN at SET DEFAULT now();
