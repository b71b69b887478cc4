-- Decision links refused because their signature does not hold (issue 8, item 4). Such a link
-- proves nothing, not even its tenant, so it cannot be an audit row of a tenant: it is recorded
-- here with what can be known (when, from where, the request id, why, who was signed in) and
-- the tenant the link claims, unverified. Admins of that tenant (and of the signed-in person's
-- tenant) read it through the API, marked as unverified; only the owner role writes it.
CREATE TABLE refused_links (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                 timestamptz NOT NULL DEFAULT now(),
    ip                 inet,
    request_id         text,
    page               text NOT NULL,
    reason             text NOT NULL,
    claimed_tenant_id  uuid,
    claimed_approver   uuid,
    signed_in_user     uuid,
    signed_in_tenant   uuid
);
CREATE INDEX refused_links_claimed ON refused_links (claimed_tenant_id, id);
CREATE INDEX refused_links_signed_in ON refused_links (signed_in_tenant, id);
