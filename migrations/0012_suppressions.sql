-- Addresses a tenant must not send to on a channel: added by the tenant's operator, or by
-- Hermes from a hard bounce, a complaint or an unregistered push token (the `suppressions`
-- subscriber). A message's steps to a suppressed address are skipped at accept.
CREATE TABLE suppressions (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    channel    text NOT NULL CHECK (channel IN ('sms', 'email', 'push', 'whatsapp')),
    address    text NOT NULL CHECK (length(address) BETWEEN 1 AND 4096),
    -- hard_bounce, complaint, unregistered, or the operator's words.
    reason     text NOT NULL,
    -- Who added it: `operator`, or `message:<id>` for an outcome of that message.
    source     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, address)
);

-- Read with the key on every request: a tenant without suppressions costs no lookup at accept.
ALTER TABLE tenants ADD COLUMN has_suppressions boolean NOT NULL DEFAULT false;
