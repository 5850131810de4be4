-- A tenant's duplicate window (its `dedup_window_seconds` setting): a message to the same
-- recipient with the same content as one accepted less than the window ago is refused (409
-- duplicate_content). Claimed in the transaction that stores the message, like idempotency keys,
-- so a fingerprint never names a message that was not stored.
CREATE TABLE content_fingerprints (
    tenant_id   uuid        NOT NULL,
    -- SHA-256 of the recipient and content in their stored form.
    fingerprint bytea       NOT NULL,
    message_id  uuid        NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, fingerprint)
);
CREATE INDEX content_fingerprints_expires_idx ON content_fingerprints (expires_at);
