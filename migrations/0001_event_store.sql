-- The event store: one append-only log of every fact Hermes records.
CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction. Tailing readers order by (tx_id, position) and only read
    -- transactions older than every transaction still running, so a late commit is never skipped.
    tx_id          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    tenant_id      uuid NOT NULL,
    stream_type    text NOT NULL,
    stream_id      uuid NOT NULL,
    stream_version bigint NOT NULL CHECK (stream_version > 0),
    event_id       uuid NOT NULL,
    event_type     text NOT NULL,
    schema_version int NOT NULL,
    payload        jsonb NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);
CREATE INDEX events_tail_idx ON events (tx_id, position);

-- Events are facts: never updated, never deleted.
CREATE FUNCTION events_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();

-- Where each subscriber (projector, saga, relay) has read up to.
CREATE TABLE subscription_checkpoints (
    name       text PRIMARY KEY,
    tx_id      xid8 NOT NULL,
    position   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Durable timers, written in the same transaction as the event that arms them.
CREATE TABLE timers (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    stream_id    uuid NOT NULL,
    kind         jsonb NOT NULL,
    due_at       timestamptz NOT NULL,
    -- A poller that claimed the timer holds it until then; after a crash another poller takes it.
    locked_until timestamptz
);
CREATE INDEX timers_due_idx ON timers (due_at);
CREATE INDEX timers_stream_idx ON timers (stream_id);
