-- Read model of messages, owned by the `message-views` projector (projections/).
-- `state` is the Message aggregate's state folded from its events; the indexed columns serve
-- the list endpoint's filters and cursor.
CREATE TABLE message_views (
    message_id uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    status     text NOT NULL,
    reference  text,
    version    bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    state      jsonb NOT NULL
);
CREATE INDEX message_views_tenant_created_idx ON message_views (tenant_id, created_at DESC, message_id DESC);
CREATE INDEX message_views_tenant_status_idx ON message_views (tenant_id, status, created_at DESC, message_id DESC);
