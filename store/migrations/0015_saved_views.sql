-- Saved views (issue 12): an agent's named ticket lists, kept as the query string of
-- `GET /tickets` (the filters and sort the portal's queue sends). Each is its owner's alone.

CREATE TABLE saved_views (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    user_id     uuid NOT NULL,
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    query       text NOT NULL CHECK (length(query) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT archer_now(),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE UNIQUE INDEX saved_views_user_name ON saved_views (tenant_id, user_id, lower(name));
ALTER TABLE saved_views ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON saved_views TO archer_app
    USING (tenant_id = archer_current_tenant()) WITH CHECK (tenant_id = archer_current_tenant());
GRANT SELECT, INSERT, DELETE ON saved_views TO archer_app;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON saved_views
    FOR EACH ROW EXECUTE FUNCTION archer_audit_row();
