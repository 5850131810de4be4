-- Tamper evidence (issue 10; the rules are in infra/src/event_chain.rs).
--
-- Each event's hash covers its columns and the hash of its stream's previous event, computed by
-- the writer (no trigger on the append path). Events recorded before this migration keep a NULL
-- hash: `hermes verify` counts them as recorded before the chain and starts their streams' chains
-- after them. Adding a nullable column rewrites nothing.
ALTER TABLE events ADD COLUMN hash bytea CHECK (octet_length(hash) = 32);

-- Checkpoints of the whole log: each `head` folds the previous head with the hashes of the events
-- recorded since, in tail order (tx_id, position), up to and including (tx_id, position). They show
-- what a stream's own chain cannot: a stream removed whole, or its last events cut off.
CREATE TABLE log_checkpoints (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id       xid8 NOT NULL,
    position    bigint NOT NULL,
    events      bigint NOT NULL CHECK (events > 0),
    head        bytea NOT NULL CHECK (octet_length(head) = 32),
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION log_checkpoints_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'log checkpoints are append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER log_checkpoints_append_only BEFORE UPDATE OR DELETE ON log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION log_checkpoints_reject_change();
CREATE TRIGGER log_checkpoints_no_truncate BEFORE TRUNCATE ON log_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION log_checkpoints_reject_change();
