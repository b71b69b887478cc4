-- Lists that stay fast at a million tickets (issue 11). Every documented filter and sort of
-- `GET /tickets` is served by an index that leads with the tenant, as row-level security adds
-- `tenant_id = archer_current_tenant()` (a STABLE function, so an index condition) to every
-- query; tests/tests/e2e/list_plans.rs fails when a plan scans the table instead.

-- The SLA due instant, where an index can serve the sort: a copy of `ticket_sla.next_due_at`
-- (the projection the ticket workflow writes) kept on the ticket by a trigger, so it can never
-- disagree with its source. Derived, so not audited (the projection is the record).
ALTER TABLE tickets ADD COLUMN sla_due_at timestamptz;

CREATE OR REPLACE FUNCTION archer_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    redacted text[] := ARRAY['password_hash', 'search', 'token_hash', 'updated_at', 'version', 'event_seq',
                             'sla_due_at'];
    secrets  text[] := ARRAY['secret_ciphertext', 'secret_nonce'];
    old_row  jsonb;
    new_row  jsonb;
    row_     jsonb;
    b        jsonb;
    a        jsonb;
    tenant   uuid;
    entity   text;
    ticket   uuid;
BEGIN
    IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD) - redacted; END IF;
    IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW) - redacted; END IF;
    IF TG_TABLE_NAME = 'connections' THEN
        old_row := (old_row - secrets) || jsonb_build_object('secret', 'set:' || left(md5(old_row ->> 'secret_nonce'), 12));
        new_row := (new_row - secrets) || jsonb_build_object('secret', 'set:' || left(md5(new_row ->> 'secret_nonce'), 12));
    END IF;
    IF TG_OP = 'UPDATE' THEN
        SELECT jsonb_object_agg(o.key, o.value), jsonb_object_agg(o.key, n.value)
          INTO b, a
          FROM jsonb_each(old_row) o JOIN jsonb_each(new_row) n USING (key)
         WHERE o.value IS DISTINCT FROM n.value;
        IF b IS NULL THEN RETURN NULL; END IF; -- nothing audited changed
    ELSE
        b := old_row;
        a := new_row;
    END IF;
    row_ := coalesce(new_row, old_row);
    tenant := COALESCE((row_ ->> 'tenant_id')::uuid,
                       CASE WHEN TG_TABLE_NAME = 'tenants' THEN (row_ ->> 'id')::uuid END);
    entity := COALESCE(row_ ->> 'id',
                       CASE TG_TABLE_NAME
                           WHEN 'user_roles'       THEN row_ ->> 'user_id'
                           WHEN 'team_members'     THEN row_ ->> 'team_id'
                           WHEN 'ticket_links'     THEN row_ ->> 'from_ticket_id'
                           WHEN 'playbook_steps'   THEN (row_ ->> 'run_id') || '/' || (row_ ->> 'step_id')
                           WHEN 'playbook_watches' THEN row_ ->> 'run_id'
                       END);
    ticket := CASE TG_TABLE_NAME
                  WHEN 'tickets'        THEN (row_ ->> 'id')::uuid
                  WHEN 'ticket_links'   THEN (row_ ->> 'from_ticket_id')::uuid
                  WHEN 'playbook_steps' THEN (SELECT r.ticket_id FROM playbook_runs r
                                               WHERE r.id = (row_ ->> 'run_id')::uuid)
                  ELSE (row_ ->> 'ticket_id')::uuid
              END;
    INSERT INTO audit_log (tenant_id, actor_id, action, entity_type, entity_id, before, after, request_id, ip, ticket_id)
    VALUES (tenant,
            nullif(current_setting('archer.actor_id', true), '')::uuid,
            TG_TABLE_NAME || '.' || lower(TG_OP),
            TG_TABLE_NAME,
            entity,
            b, a,
            nullif(current_setting('archer.request_id', true), ''),
            nullif(current_setting('archer.client_ip', true), '')::inet,
            ticket);
    RETURN NULL;
END $$;

-- Runs as the writer of the projection (archer_app, in its tenant): row-level security holds.
-- Writers lock the ticket before its projection (`sla::project` and rebuilds do), so this
-- update of the ticket takes no lock out of order.
CREATE FUNCTION archer_ticket_sla_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tickets SET sla_due_at = NEW.next_due_at
     WHERE id = NEW.ticket_id AND sla_due_at IS DISTINCT FROM NEW.next_due_at;
    RETURN NULL;
END $$;
CREATE TRIGGER due_on_ticket AFTER INSERT OR UPDATE OF next_due_at ON ticket_sla
    FOR EACH ROW EXECUTE FUNCTION archer_ticket_sla_due();

UPDATE tickets t SET sla_due_at = s.next_due_at
  FROM ticket_sla s
 WHERE s.ticket_id = t.id AND s.next_due_at IS NOT NULL;

-- Sorts (each with the id that breaks ties, as the keyset cursor compares them). Tickets
-- without a running clock sort after every due instant: the same expression as the queries'.
CREATE INDEX tickets_sla_due ON tickets (tenant_id, (COALESCE(sla_due_at, '9999-12-31T00:00:00Z'::timestamptz)), id);
CREATE INDEX tickets_updated ON tickets (tenant_id, updated_at, id);
CREATE INDEX tickets_priority ON tickets (tenant_id, priority, id);
-- Filters that lists combine with a sort: a status by priority (a queue's "new, most urgent
-- first"), a person's tickets newest first.
DROP INDEX tickets_status;
CREATE INDEX tickets_status ON tickets (tenant_id, status, priority, id);
DROP INDEX tickets_assignee;
CREATE INDEX tickets_assignee ON tickets (tenant_id, assignee_id, created_at, id);
