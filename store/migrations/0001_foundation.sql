-- Archer foundation: tenants, identity, audit, tickets, outbox.
--
-- Tenant isolation lives here, not only in handlers: every tenant-owned table has row-level
-- security for the role `archer_app`, which the API switches to (SET LOCAL ROLE) inside every
-- tenant-scoped transaction, after setting `archer.tenant_id`. The owner of these tables (the
-- role that runs migrations) is not subject to RLS; it is used only by the outbox relay, by
-- login (which must find an account before it knows the tenant) and by administration.

DO $$
BEGIN
    CREATE ROLE archer_app NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT archer_app TO %I', current_user);
EXCEPTION
    WHEN others THEN NULL; -- superusers and existing members need no grant
END $$;

GRANT USAGE ON SCHEMA public TO archer_app;

-- The tenant of the current transaction, or NULL (which matches no row).
CREATE FUNCTION archer_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('archer.tenant_id', true), '')::uuid $$;

-- Tenants ----------------------------------------------------------------------------------

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants TO archer_app
    USING (id = archer_current_tenant()) WITH CHECK (id = archer_current_tenant());
GRANT SELECT, UPDATE ON tenants TO archer_app;

-- Identity ---------------------------------------------------------------------------------

CREATE TABLE roles (
    name         text PRIMARY KEY,
    description  text NOT NULL,
    permissions  text[] NOT NULL
);
GRANT SELECT ON roles TO archer_app;

INSERT INTO roles (name, description, permissions) VALUES
    ('requester',  'Raises and follows their own tickets and requests',
        ARRAY['ticket:create']),
    ('agent',      'Works tickets in the queues',
        ARRAY['ticket:create', 'ticket:update', 'ticket:assign']),
    ('approver',   'Decides approvals',
        ARRAY['approval:decide']),
    ('cab_member', 'Member of the change advisory board',
        ARRAY['approval:decide']),
    ('manager',    'Leads a team: works and assigns its tickets, decides approvals, reads the audit log',
        ARRAY['ticket:create', 'ticket:update', 'ticket:assign', 'approval:decide', 'audit:read']),
    ('admin',      'Administers the tenant',
        ARRAY['ticket:create', 'ticket:update', 'ticket:assign', 'approval:decide', 'catalog:admin',
              'playbook:admin', 'sla:admin', 'user:admin', 'audit:read']);

CREATE TABLE users (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    email            text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    display_name     text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    password_hash    text,
    active           boolean NOT NULL DEFAULT true,
    manager_id       uuid,
    failed_logins    integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, manager_id) REFERENCES users (tenant_id, id)
);
CREATE UNIQUE INDEX users_email_per_tenant ON users (tenant_id, lower(email));
CREATE INDEX users_by_email ON users (lower(email));
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON users TO archer_app;

CREATE TABLE user_roles (
    tenant_id  uuid NOT NULL,
    user_id    uuid NOT NULL,
    role       text NOT NULL REFERENCES roles (name),
    PRIMARY KEY (user_id, role),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX user_roles_tenant ON user_roles (tenant_id);
ALTER TABLE user_roles ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON user_roles TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON user_roles TO archer_app;

CREATE TABLE teams (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX teams_name_per_tenant ON teams (tenant_id, lower(name));
ALTER TABLE teams ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON teams TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON teams TO archer_app;

CREATE TABLE team_members (
    tenant_id  uuid NOT NULL,
    team_id    uuid NOT NULL,
    user_id    uuid NOT NULL,
    PRIMARY KEY (team_id, user_id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX team_members_user ON team_members (user_id);
ALTER TABLE team_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON team_members TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON team_members TO archer_app;

-- Refresh tokens: only their SHA-256 is stored. A family is one login's chain of rotations;
-- presenting a token that was already rotated revokes the whole family.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    user_id     uuid NOT NULL,
    family_id   uuid NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refresh_tokens TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON refresh_tokens TO archer_app;

-- Audit ------------------------------------------------------------------------------------
-- Immutable: no role may update, delete or truncate it (triggers refuse, for the owner too).

CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_id     uuid,
    action       text NOT NULL,
    entity_type  text NOT NULL,
    entity_id    text,
    before       jsonb,
    after        jsonb,
    request_id   text,
    ip           inet,
    detail       text
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, id DESC);
CREATE INDEX audit_log_entity ON audit_log (tenant_id, entity_type, entity_id);
CREATE INDEX audit_log_actor ON audit_log (tenant_id, actor_id);
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT ON audit_log TO archer_app;

CREATE FUNCTION archer_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION archer_audit_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION archer_audit_refuse_change();

-- Every insert, update and delete of an audited table writes an audit row from the
-- transaction's context (`archer.actor_id`, `archer.request_id`, `archer.client_ip`), so no
-- code path can change data without a trace. Secrets and derived columns are left out; an
-- update records only the columns that changed.
CREATE FUNCTION archer_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    redacted text[] := ARRAY['password_hash', 'search', 'token_hash', 'updated_at', 'version', 'event_seq'];
    old_row  jsonb;
    new_row  jsonb;
    b        jsonb;
    a        jsonb;
    tenant   uuid;
    entity   text;
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
    tenant := COALESCE((coalesce(new_row, old_row) ->> 'tenant_id')::uuid,
                       CASE WHEN TG_TABLE_NAME = 'tenants' THEN (coalesce(new_row, old_row) ->> 'id')::uuid END);
    entity := COALESCE(coalesce(new_row, old_row) ->> 'id',
                       CASE TG_TABLE_NAME
                           WHEN 'user_roles'   THEN coalesce(new_row, old_row) ->> 'user_id'
                           WHEN 'team_members' THEN coalesce(new_row, old_row) ->> 'team_id'
                           WHEN 'ticket_links' THEN coalesce(new_row, old_row) ->> 'from_ticket_id'
                       END);
    INSERT INTO audit_log (tenant_id, actor_id, action, entity_type, entity_id, before, after, request_id, ip)
    VALUES (tenant,
            nullif(current_setting('archer.actor_id', true), '')::uuid,
            TG_TABLE_NAME || '.' || lower(TG_OP),
            TG_TABLE_NAME,
            entity,
            b, a,
            nullif(current_setting('archer.request_id', true), ''),
            nullif(current_setting('archer.client_ip', true), '')::inet);
    RETURN NULL;
END $$;

CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON user_roles
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON teams
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON team_members
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Tickets ----------------------------------------------------------------------------------

-- Numbers per tenant and kind, allocated in the creating transaction: the row lock serialises
-- concurrent creates and a rollback returns the number, so there are no gaps and no races.
CREATE TABLE ticket_counters (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    kind         text NOT NULL,
    last_number  integer NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);
ALTER TABLE ticket_counters ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ticket_counters TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON ticket_counters TO archer_app;

CREATE TABLE tickets (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id),
    kind               text NOT NULL CHECK (kind IN ('incident', 'service_request', 'change', 'problem')),
    number             integer NOT NULL CHECK (number > 0),
    title              text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description        text NOT NULL DEFAULT '' CHECK (length(description) <= 20000),
    requester_id       uuid NOT NULL,
    assignee_id        uuid,
    team_id            uuid,
    impact             smallint NOT NULL CHECK (impact BETWEEN 1 AND 4),
    urgency            smallint NOT NULL CHECK (urgency BETWEEN 1 AND 4),
    priority           smallint NOT NULL CHECK (priority BETWEEN 1 AND 4),
    priority_reason    text,
    category           text CHECK (length(category) <= 100),
    status             text NOT NULL,
    tags               text[] NOT NULL DEFAULT '{}',
    version            integer NOT NULL DEFAULT 1,
    event_seq          bigint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    resolved_at        timestamptz,
    closed_at          timestamptz,
    search             tsvector GENERATED ALWAYS AS
                           (to_tsvector('english', title || ' ' || description)) STORED,
    UNIQUE (tenant_id, kind, number),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, requester_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, assignee_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id)
);
CREATE INDEX tickets_list ON tickets (tenant_id, created_at DESC, id DESC);
CREATE INDEX tickets_status ON tickets (tenant_id, status);
CREATE INDEX tickets_assignee ON tickets (tenant_id, assignee_id);
CREATE INDEX tickets_requester ON tickets (tenant_id, requester_id);
CREATE INDEX tickets_team ON tickets (tenant_id, team_id);
CREATE INDEX tickets_search ON tickets USING gin (search);
ALTER TABLE tickets ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tickets TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON tickets TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON tickets
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

CREATE TABLE ticket_comments (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    ticket_id   uuid NOT NULL,
    author_id   uuid NOT NULL,
    body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    internal    boolean NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id),
    FOREIGN KEY (tenant_id, author_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX ticket_comments_ticket ON ticket_comments (ticket_id, created_at);
ALTER TABLE ticket_comments ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ticket_comments TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT ON ticket_comments TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON ticket_comments
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

CREATE TABLE ticket_links (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    from_ticket_id  uuid NOT NULL,
    to_ticket_id    uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('duplicate_of', 'blocked_by', 'caused_by', 'relates_to')),
    created_by      uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (from_ticket_id <> to_ticket_id),
    UNIQUE (from_ticket_id, to_ticket_id, kind),
    FOREIGN KEY (tenant_id, from_ticket_id) REFERENCES tickets (tenant_id, id),
    FOREIGN KEY (tenant_id, to_ticket_id) REFERENCES tickets (tenant_id, id),
    FOREIGN KEY (tenant_id, created_by) REFERENCES users (tenant_id, id)
);
CREATE INDEX ticket_links_to ON ticket_links (to_ticket_id);
ALTER TABLE ticket_links ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ticket_links TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, DELETE ON ticket_links TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON ticket_links
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Outbox -----------------------------------------------------------------------------------
-- Intents to start or signal workflows, written in the same transaction as the data they
-- follow from. The relay delivers them in id order per workflow, idempotently.

CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    workflow_id   text NOT NULL,
    intent        text NOT NULL CHECK (intent IN ('start', 'signal')),
    name          text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    available_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text
);
CREATE INDEX outbox_pending ON outbox (id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_workflow ON outbox (workflow_id, id);
ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON outbox TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT ON outbox TO archer_app;

CREATE FUNCTION archer_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('archer_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION archer_outbox_notify();

-- Idempotency keys: a POST with `Idempotency-Key` claims its key first (a concurrent twin
-- waits on the row lock) and stores its response in the same transaction as its effects; a
-- replay returns that response. A failed request rolls back its claim, so it can be retried.
CREATE TABLE idempotency_keys (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    user_id        uuid NOT NULL,
    key            text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash   bytea NOT NULL,
    status_code    smallint,
    response_body  jsonb,
    location       text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, key)
);
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO archer_app;

GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO archer_app;
