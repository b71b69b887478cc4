-- Service catalog (versioned items with JSON Schema forms), requests, change type and risk,
-- approval chains (approvals, their steps and each approver's task), emailed decision links,
-- out-of-office delegation and per-tenant change routing.

-- Tickets -------------------------------------------------------------------------------------

ALTER TABLE tickets
    ADD COLUMN change_type text CHECK (change_type IN ('standard', 'normal', 'emergency')),
    ADD COLUMN risk text CHECK (risk IN ('low', 'medium', 'high')),
    ADD COLUMN catalog_item_id uuid,
    ADD COLUMN catalog_item_version integer,
    ADD COLUMN request_fields jsonb;

-- Catalog ---------------------------------------------------------------------------------------

CREATE TABLE catalog_categories (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description  text NOT NULL DEFAULT '',
    icon         text,
    position     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX catalog_categories_name ON catalog_categories (tenant_id, lower(name));
ALTER TABLE catalog_categories ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON catalog_categories TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON catalog_categories TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON catalog_categories
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

CREATE TABLE catalog_items (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    category_id      uuid NOT NULL,
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    active           boolean NOT NULL DEFAULT true,
    current_version  integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, category_id) REFERENCES catalog_categories (tenant_id, id)
);
CREATE UNIQUE INDEX catalog_items_name ON catalog_items (tenant_id, lower(name)) WHERE active;
ALTER TABLE catalog_items ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON catalog_items TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON catalog_items TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON catalog_items
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- An item version is immutable: a request keeps the version it was submitted against.
CREATE TABLE catalog_item_versions (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    item_id     uuid NOT NULL,
    version     integer NOT NULL CHECK (version > 0),
    spec        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  uuid,
    UNIQUE (item_id, version),
    FOREIGN KEY (tenant_id, item_id) REFERENCES catalog_items (tenant_id, id)
);
ALTER TABLE catalog_item_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON catalog_item_versions TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT ON catalog_item_versions TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON catalog_item_versions
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Approvals -------------------------------------------------------------------------------------

CREATE TABLE approvals (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    ticket_id    uuid NOT NULL,
    -- the nth approval of the ticket (a change sent back to assessment is approved again)
    seq          integer NOT NULL,
    workflow_id  text NOT NULL,
    chain        jsonb NOT NULL,
    -- why the chain was chosen (catalog item, change routing) and any automatic outcome
    source       text NOT NULL,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected', 'cancelled')),
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    decided_at   timestamptz,
    UNIQUE (ticket_id, seq),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id)
);
ALTER TABLE approvals ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON approvals TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON approvals TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON approvals
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

CREATE TABLE approval_steps (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL,
    approval_id    uuid NOT NULL,
    ticket_id      uuid NOT NULL,
    ordinal        integer NOT NULL,
    name           text NOT NULL,
    spec           jsonb NOT NULL,
    state          text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'approved', 'rejected', 'cancelled')),
    reason         text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    reminders_at   timestamptz[] NOT NULL DEFAULT '{}',
    timeout_at     timestamptz,
    escalated_at   timestamptz,
    closed_at      timestamptz,
    UNIQUE (approval_id, ordinal),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, approval_id) REFERENCES approvals (tenant_id, id)
);
ALTER TABLE approval_steps ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON approval_steps TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON approval_steps TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON approval_steps
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- One row per approver and step: who was asked (and for whom, under delegation) and what they
-- decided. Unique per approver and step, so a decision is taken once.
CREATE TABLE approval_tasks (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL,
    step_id        uuid NOT NULL,
    approval_id    uuid NOT NULL,
    ticket_id      uuid NOT NULL,
    position       integer NOT NULL,
    approver_id    uuid NOT NULL,
    on_behalf_of   uuid,
    -- waiting: not asked yet (sequential); asked; approved; rejected; superseded: the step
    -- closed before they decided
    state          text NOT NULL CHECK (state IN ('waiting', 'asked', 'approved', 'rejected', 'superseded')),
    escalation     boolean NOT NULL DEFAULT false,
    asked_at       timestamptz,
    decided_at     timestamptz,
    comment        text,
    via            text CHECK (via IN ('app', 'email')),
    UNIQUE (step_id, approver_id),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, step_id) REFERENCES approval_steps (tenant_id, id),
    FOREIGN KEY (tenant_id, approver_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, on_behalf_of) REFERENCES users (tenant_id, id)
);
CREATE INDEX approval_tasks_inbox ON approval_tasks (approver_id, state);
ALTER TABLE approval_tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON approval_tasks TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON approval_tasks TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON approval_tasks
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Emailed decision links are single-use: each token id is recorded when it decides.
CREATE TABLE approval_link_uses (
    token_id    uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    task_id     uuid NOT NULL,
    used_at     timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE approval_link_uses ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON approval_link_uses TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT ON approval_link_uses TO archer_app;

-- Out of office: while active, approvals for `user_id` go to `delegate_id`.
CREATE TABLE user_delegations (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    user_id      uuid NOT NULL,
    delegate_id  uuid NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK (user_id <> delegate_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, delegate_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX user_delegations_user ON user_delegations (user_id, starts_at, ends_at);
ALTER TABLE user_delegations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON user_delegations TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, DELETE ON user_delegations TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON user_delegations
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();

-- Per-tenant settings: the change routing (which chain each change type runs) is data.
CREATE TABLE tenant_settings (
    tenant_id       uuid PRIMARY KEY REFERENCES tenants (id),
    change_routing  jsonb,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenant_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_settings TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, UPDATE ON tenant_settings TO archer_app;

CREATE FUNCTION archer_tenant_settings_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (tenant_id, actor_id, action, entity_type, entity_id, before, after, request_id, ip)
    VALUES (NEW.tenant_id,
            nullif(current_setting('archer.actor_id', true), '')::uuid,
            'tenant_settings.' || lower(TG_OP),
            'tenant_settings',
            NEW.tenant_id::text,
            CASE WHEN TG_OP = 'UPDATE' THEN jsonb_build_object('change_routing', OLD.change_routing) END,
            jsonb_build_object('change_routing', NEW.change_routing),
            nullif(current_setting('archer.request_id', true), ''),
            nullif(current_setting('archer.client_ip', true), '')::inet);
    RETURN NULL;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON tenant_settings
    FOR EACH ROW EXECUTE FUNCTION archer_tenant_settings_audit();

GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO archer_app;

-- Emails are claimed (committed) before they are sent: a sender that dies mid-send leaves the
-- claim, and the email is then never sent again (it may have gone out) but marked for operators.
ALTER TABLE email_outbox
    ADD COLUMN sending_since timestamptz,
    ADD COLUMN outcome_unknown_at timestamptz;
