-- An expired access token is audited once, then only counted (issue 8, item 5): a client that
-- keeps sending one must not write an audit row per request.
CREATE TABLE expired_token_uses (
    jti        uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    user_id    uuid NOT NULL,
    uses       bigint NOT NULL DEFAULT 1,
    first_at   timestamptz NOT NULL DEFAULT now(),
    last_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX expired_token_uses_first ON expired_token_uses (first_at);
