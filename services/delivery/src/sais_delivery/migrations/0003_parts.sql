-- A batch goes as parts 1..n, each a complete message under the maximum message size.
-- Which cohort records are in which part is fixed when the batch is planned (one snapshot), so a
-- part can be rendered again after a crash and still hold the same children.
ALTER TABLE delivery.batches ADD COLUMN part_count integer NOT NULL DEFAULT 1;

CREATE TABLE delivery.batch_parts (
    batch_id     uuid NOT NULL REFERENCES delivery.batches ON DELETE CASCADE,
    part_no      integer NOT NULL CHECK (part_no >= 1),
    message_id   text NOT NULL UNIQUE,
    --   prepared → sending → sent;  sending after a crash = uncertain: an operator resolves it;
    --   failed = refused permanently (5xx, or over the size limit): nothing was accepted.
    status       text NOT NULL CHECK (status IN ('prepared', 'sending', 'sent', 'failed')),
    segments     jsonb NOT NULL,
    counts       jsonb,
    files        jsonb,
    size_bytes   bigint,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    smtp_reply   text,
    attempted_at timestamptz,
    sent_at      timestamptz,
    PRIMARY KEY (batch_id, part_no)
);

CREATE TABLE delivery.batch_members (
    batch_id      uuid NOT NULL REFERENCES delivery.batches ON DELETE CASCADE,
    part_no       integer NOT NULL,
    programme_key text NOT NULL,
    pupil_id      uuid NOT NULL,
    revision      integer NOT NULL,
    PRIMARY KEY (batch_id, programme_key, pupil_id)
);
CREATE INDEX batch_members_part ON delivery.batch_members (batch_id, part_no);
