-- Tenant webhooks (Standard Webhooks). A tenant's endpoints; the outbox the `webhook-outbox`
-- subscriber fills from the log (one row per notice and endpoint); every attempt to deliver one.

CREATE TABLE webhook_endpoints (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    url             text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 1024),
    -- Notice types (`message.delivered`, ...) it gets; empty: all of them.
    event_types     text[] NOT NULL DEFAULT '{}',
    enabled         boolean NOT NULL DEFAULT true,
    -- Why Hermes disabled it (failing for days), cleared when the tenant enables it again.
    disabled_reason text,
    -- The `whsec_` signing secret, sealed with HERMES_SECRET_KEY when one is set (`sealed`).
    secret          bytea NOT NULL,
    sealed          boolean NOT NULL,
    -- After a rotation, the old secret still signs (a second signature) until this time.
    previous_secret       bytea,
    previous_sealed       boolean,
    previous_secret_until timestamptz,
    -- Since when every delivery to it has failed (none succeeded since); NULL while it answers.
    failing_since   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant_idx ON webhook_endpoints (tenant_id);

CREATE TABLE webhook_deliveries (
    -- The `webhook-id`: the same on every attempt, so receivers can drop repeats.
    id               uuid PRIMARY KEY,
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id        uuid NOT NULL,
    message_id       uuid NOT NULL,
    -- The event that gave the notice, and which of its notices this is.
    event_id         uuid NOT NULL,
    notice_no        integer NOT NULL,
    event_type       text NOT NULL,
    -- The exact bytes sent (and signed) on every attempt.
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    -- When it is due (pending); a claimed delivery's lease end while it is being sent.
    next_attempt_at  timestamptz,
    first_attempt_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_deliveries_notice_key UNIQUE (endpoint_id, event_id, notice_no)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
-- Per endpoint and message, notices go out in order: a pending one waits for the one before it.
CREATE INDEX webhook_deliveries_order_idx ON webhook_deliveries (endpoint_id, message_id, seq)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_message_idx ON webhook_deliveries (message_id);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, seq);

CREATE TABLE webhook_attempts (
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    attempted_at timestamptz NOT NULL,
    -- NULL: no HTTP answer (refused address, connection error, timeout; see `error`).
    status_code  integer,
    latency_ms   integer NOT NULL,
    -- The start of the answer's body (at most 1 KiB).
    response     text NOT NULL DEFAULT '',
    error        text,
    PRIMARY KEY (delivery_id, attempt)
);
