-- Where a projector consuming Kafka has projected each partition to: written in the same
-- transaction as its read-model rows, so a record is projected exactly once whatever the
-- consumer group's own committed offsets say.
CREATE TABLE kafka_offsets (
    consumer    text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    -- The next offset to project.
    next_offset bigint  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);
