-- YAML playbooks (issue 10): versioned documents, the connections their HTTP steps call, and
-- their runs on tickets with one row per step (the ticket's timeline shows them).
--
-- A catalog item names its fulfilment playbook in its version's spec (`spec.playbook`), next to
-- its form and approval chain, so a request runs the playbook of the version it was submitted
-- against; an expression index finds the items naming a playbook. No column is added to
-- `catalog_items`: a second copy of the name there could disagree with the version's.

-- Playbooks and their versions ---------------------------------------------------------------

CREATE TABLE playbooks (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    name        text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    created_at  timestamptz NOT NULL DEFAULT archer_now(),
    created_by  uuid,
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);
ALTER TABLE playbooks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON playbooks TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON playbooks TO archer_app; -- UPDATE: versions lock their playbook (FOR UPDATE)
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON playbooks
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- draft -> published (immutable) -> retired. At most one draft and one published version.
CREATE TABLE playbook_versions (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    playbook_id   uuid NOT NULL,
    version       integer NOT NULL CHECK (version > 0),
    status        text NOT NULL CHECK (status IN ('draft', 'published', 'retired')),
    source        text NOT NULL,
    -- the document's triggers, `[{"kind": "ticket_created", "condition": "..."}, ...]`, for lookup
    triggers      jsonb NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL DEFAULT archer_now(),
    created_by    uuid,
    published_at  timestamptz,
    published_by  uuid,
    retired_at    timestamptz,
    UNIQUE (playbook_id, version),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, playbook_id) REFERENCES playbooks (tenant_id, id)
);
CREATE UNIQUE INDEX playbook_versions_one_draft ON playbook_versions (playbook_id) WHERE status = 'draft';
CREATE UNIQUE INDEX playbook_versions_one_published ON playbook_versions (playbook_id) WHERE status = 'published';
-- trigger lookup on every ticket create/change: published versions containing a trigger kind
CREATE INDEX playbook_versions_triggers ON playbook_versions USING gin (triggers jsonb_path_ops)
    WHERE status = 'published';
ALTER TABLE playbook_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON playbook_versions TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON playbook_versions TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON playbook_versions
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

CREATE INDEX catalog_item_versions_playbook ON catalog_item_versions (tenant_id, (spec ->> 'playbook'))
    WHERE spec ? 'playbook';

-- Connections ----------------------------------------------------------------------------------
-- The secret is encrypted by the store (XChaCha20-Poly1305, key from `secrets_key`) and never
-- read back through the API; the audit trigger records only whether one is set (below).

CREATE TABLE connections (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id),
    name               text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    base_url           text NOT NULL CHECK (base_url ~ '^https?://' AND length(base_url) <= 2000),
    auth               text NOT NULL CHECK (auth IN ('none', 'bearer', 'basic', 'header', 'webhook')),
    header_name        text CHECK (length(header_name) BETWEEN 1 AND 200),
    username           text CHECK (length(username) <= 200),
    secret_ciphertext  bytea,
    secret_nonce       bytea,
    allow_private      boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT archer_now(),
    updated_at         timestamptz NOT NULL DEFAULT archer_now(),
    UNIQUE (tenant_id, name),
    CHECK ((secret_ciphertext IS NULL) = (secret_nonce IS NULL)),
    CHECK ((auth = 'header') = (header_name IS NOT NULL))
);
ALTER TABLE connections ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON connections TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON connections TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON connections
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Runs -----------------------------------------------------------------------------------------

CREATE TABLE playbook_runs (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    playbook_id  uuid NOT NULL,
    version_id   uuid NOT NULL,
    ticket_id    uuid NOT NULL,
    -- the nth run of this playbook on this ticket (its workflow id ends with it)
    run_number   integer NOT NULL CHECK (run_number > 0),
    workflow_id  text NOT NULL UNIQUE,
    trigger      text NOT NULL CHECK (trigger IN ('catalog_fulfilment', 'ticket_created', 'ticket_changed',
                                                  'sla_warning', 'sla_breach', 'manual')),
    inputs       jsonb NOT NULL DEFAULT '{}',
    status       text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    error        text,
    started_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT archer_now(),
    updated_at   timestamptz NOT NULL DEFAULT archer_now(),
    finished_at  timestamptz,
    UNIQUE (ticket_id, playbook_id, run_number),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, playbook_id) REFERENCES playbooks (tenant_id, id),
    FOREIGN KEY (tenant_id, version_id) REFERENCES playbook_versions (tenant_id, id),
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id),
    FOREIGN KEY (tenant_id, started_by) REFERENCES users (tenant_id, id)
);
CREATE INDEX playbook_runs_ticket ON playbook_runs (ticket_id);
CREATE INDEX playbook_runs_version ON playbook_runs (version_id);
ALTER TABLE playbook_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON playbook_runs TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON playbook_runs TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON playbook_runs
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

CREATE TABLE playbook_steps (
    tenant_id    uuid NOT NULL,
    run_id       uuid NOT NULL,
    step_id      text NOT NULL,
    action       text NOT NULL,
    -- the step's place in the document, for showing the steps in the order they were written
    position     integer NOT NULL DEFAULT 0,
    status       text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    round        integer NOT NULL DEFAULT 0,
    attempts     integer NOT NULL DEFAULT 0,
    reason       text,
    -- a summary: at most 8 KiB of the step's output (a note replaces a larger one)
    output       jsonb,
    error        text,
    started_at   timestamptz,
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT archer_now(),
    PRIMARY KEY (run_id, step_id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES playbook_runs (tenant_id, id)
);
ALTER TABLE playbook_steps ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON playbook_steps TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON playbook_steps TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON playbook_steps
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Tickets whose changes are signalled to a run: its own ticket and the tasks it opened.
CREATE TABLE playbook_watches (
    tenant_id  uuid NOT NULL,
    run_id     uuid NOT NULL,
    ticket_id  uuid NOT NULL,
    PRIMARY KEY (run_id, ticket_id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES playbook_runs (tenant_id, id),
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id)
);
CREATE INDEX playbook_watches_ticket ON playbook_watches (ticket_id);
ALTER TABLE playbook_watches ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON playbook_watches TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, DELETE ON playbook_watches TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON playbook_watches
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Audit ----------------------------------------------------------------------------------------
-- As 0002 defined it, plus: a connection's secret never enters the log (its ciphertext and
-- nonce are replaced by `secret`: null when none is set, else a fingerprint of the nonce, which
-- is random per encryption, so a new secret shows as a change and reveals nothing); playbook
-- steps and watches, which have no `id`, are named by their run; a step names its run's ticket,
-- so it shows in the ticket's history.
CREATE OR REPLACE FUNCTION archer_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    redacted text[] := ARRAY['password_hash', 'search', 'token_hash', 'updated_at', 'version', 'event_seq'];
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

GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO archer_app;
