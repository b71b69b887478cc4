-- SLA engine: business calendars and policies (versioned, immutable versions), each ticket's
-- pinned assignment and clock projection, recorded SLA facts, escalations, in-app
-- notifications and the email outbox.

-- Calendars ----------------------------------------------------------------------------------

CREATE TABLE business_calendars (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    current_version  integer NOT NULL DEFAULT 1,
    archived         boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX business_calendars_name ON business_calendars (tenant_id, lower(name)) WHERE NOT archived;
ALTER TABLE business_calendars ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON business_calendars TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON business_calendars TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON business_calendars
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- A version is immutable once written: a change makes a new one.
CREATE TABLE business_calendar_versions (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    calendar_id  uuid NOT NULL,
    version      integer NOT NULL CHECK (version > 0),
    spec         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   uuid,
    UNIQUE (calendar_id, version),
    FOREIGN KEY (tenant_id, calendar_id) REFERENCES business_calendars (tenant_id, id)
);
ALTER TABLE business_calendar_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON business_calendar_versions TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT ON business_calendar_versions TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON business_calendar_versions
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Policies -----------------------------------------------------------------------------------

CREATE TABLE sla_policies (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- matching order: the first active policy (lowest position) whose applies_to matches wins
    position         integer NOT NULL,
    active           boolean NOT NULL DEFAULT true,
    current_version  integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX sla_policies_name ON sla_policies (tenant_id, lower(name)) WHERE active;
CREATE INDEX sla_policies_order ON sla_policies (tenant_id, position) WHERE active;
ALTER TABLE sla_policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sla_policies TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON sla_policies TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON sla_policies
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

CREATE TABLE sla_policy_versions (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL,
    policy_id         uuid NOT NULL,
    version           integer NOT NULL CHECK (version > 0),
    spec              jsonb NOT NULL,
    -- the calendar version in force when this policy version was written; null = 24x7
    calendar_id       uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        uuid,
    UNIQUE (policy_id, version),
    FOREIGN KEY (tenant_id, policy_id) REFERENCES sla_policies (tenant_id, id),
    FOREIGN KEY (tenant_id, calendar_id) REFERENCES business_calendars (tenant_id, id)
);
ALTER TABLE sla_policy_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sla_policy_versions TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT ON sla_policy_versions TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON sla_policy_versions
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Per ticket ---------------------------------------------------------------------------------

-- The policy pinned to a ticket and the projection of its clocks, written by the workflow.
CREATE TABLE ticket_sla (
    ticket_id         uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL,
    policy_id         uuid NOT NULL,
    policy_version    integer NOT NULL,
    calendar_id       uuid,
    calendar_version  integer,
    -- the assignment the workflow runs (policy and calendar, compiled), for rebuilds
    assignment        jsonb NOT NULL,
    clocks            jsonb NOT NULL DEFAULT '[]',
    state             text NOT NULL DEFAULT 'running',
    next_due_at       timestamptz,
    seq               bigint NOT NULL DEFAULT 0,
    -- the ticket's event sequence the projection has seen (older than tickets.event_seq: stale)
    event_seq         bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id),
    FOREIGN KEY (tenant_id, policy_id) REFERENCES sla_policies (tenant_id, id)
);
CREATE INDEX ticket_sla_due ON ticket_sla (tenant_id, next_due_at);
CREATE INDEX ticket_sla_state ON ticket_sla (tenant_id, state);
ALTER TABLE ticket_sla ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ticket_sla TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON ticket_sla TO archer_app;

-- Warnings and breaches: facts with their true instants, recorded once.
CREATE TABLE sla_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    ticket_id    uuid NOT NULL,
    metric       text NOT NULL,
    cycle        integer NOT NULL,
    kind         text NOT NULL CHECK (kind ~ '^(breach|warning_[0-9]{1,2})$'),
    at           timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (ticket_id, metric, cycle, kind),
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id)
);
CREATE INDEX sla_events_tenant ON sla_events (tenant_id, at DESC);
ALTER TABLE sla_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sla_events TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT ON sla_events TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON sla_events
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Escalations that fired, once per level, target and cycle.
CREATE TABLE sla_escalations (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    ticket_id    uuid NOT NULL,
    metric       text NOT NULL,
    cycle        integer NOT NULL,
    level        integer NOT NULL,
    name         text NOT NULL,
    due_at       timestamptz NOT NULL,
    fired_at     timestamptz NOT NULL,
    actions      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (ticket_id, metric, cycle, level),
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id)
);
ALTER TABLE sla_escalations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sla_escalations TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT ON sla_escalations TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON sla_escalations
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Notifications ------------------------------------------------------------------------------

CREATE TABLE notifications (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    user_id     uuid NOT NULL,
    ticket_id   uuid,
    kind        text NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL DEFAULT '',
    data        jsonb NOT NULL DEFAULT '{}',
    -- one notification per cause and recipient, however often the cause is retried
    dedup_key   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz,
    UNIQUE (user_id, dedup_key),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id)
);
CREATE INDEX notifications_inbox ON notifications (user_id, created_at DESC);
ALTER TABLE notifications ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notifications TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON notifications TO archer_app;

-- Emails to send. The Message-ID is deterministic per cause and recipient, so a retried send
-- is the same message; `sent_at` is set once the SMTP server accepted it.
CREATE TABLE email_outbox (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    message_id   text NOT NULL UNIQUE,
    recipients   jsonb NOT NULL,
    template     text NOT NULL,
    data         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    sent_at      timestamptz
);
CREATE INDEX email_outbox_unsent ON email_outbox (created_at) WHERE sent_at IS NULL;
ALTER TABLE email_outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON email_outbox TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON email_outbox TO archer_app;

GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO archer_app;

-- Comments written by Archer itself (escalations) have no author.
ALTER TABLE ticket_comments ALTER COLUMN author_id DROP NOT NULL;

-- Audit rows name the ticket they concern, so a ticket's history (timeline, SLA rebuilds) is an
-- index lookup rather than a scan of the log.
ALTER TABLE audit_log ADD COLUMN ticket_id uuid;
CREATE INDEX audit_log_ticket ON audit_log (ticket_id, id) WHERE ticket_id IS NOT NULL;

CREATE OR REPLACE FUNCTION archer_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    redacted text[] := ARRAY['password_hash', 'search', 'token_hash', 'updated_at', 'version', 'event_seq'];
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
                           WHEN 'user_roles'   THEN row_ ->> 'user_id'
                           WHEN 'team_members' THEN row_ ->> 'team_id'
                           WHEN 'ticket_links' THEN row_ ->> 'from_ticket_id'
                       END);
    ticket := CASE TG_TABLE_NAME
                  WHEN 'tickets'      THEN (row_ ->> 'id')::uuid
                  WHEN 'ticket_links' THEN (row_ ->> 'from_ticket_id')::uuid
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
