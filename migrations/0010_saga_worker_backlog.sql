-- On Kafka, what waits for dispatch is inside the saga workers (their windows) and behind their
-- consumer positions, which the Postgres log cannot see. Each worker says here about once a
-- second when the oldest event it holds and has not started was recorded (NULL: none waits).
-- The API processes read it to measure the dispatch backlog (command/src/backlog.rs).
CREATE TABLE saga_worker_backlog (
    worker_id         uuid        PRIMARY KEY,
    oldest_waiting_at timestamptz,
    reported_at       timestamptz NOT NULL
);
