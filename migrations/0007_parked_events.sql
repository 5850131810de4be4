-- Events a subscriber could not handle (an event it cannot decode, a command the aggregate
-- refuses): parked here, with the error, so the stream goes on instead of stopping on them.
-- `hermes parked list` shows them; `hermes parked retry` asks the subscriber to try again.
CREATE TABLE parked_events (
    subscriber      text NOT NULL,
    event_id        uuid NOT NULL,
    position        bigint NOT NULL,
    stream_id       uuid NOT NULL,
    event_type      text NOT NULL,
    error           text NOT NULL,
    attempts        int NOT NULL DEFAULT 1,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    retry_requested boolean NOT NULL DEFAULT false,
    PRIMARY KEY (subscriber, event_id)
);
