-- Where each connector (by consumer group) has written up to, per Kafka partition.
-- Updated in the same transaction as the rows, so it is the truth a restart resumes from.
CREATE TABLE IF NOT EXISTS connector_offsets (
    connector       text        NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    next_offset     bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, topic, kafka_partition)
);
