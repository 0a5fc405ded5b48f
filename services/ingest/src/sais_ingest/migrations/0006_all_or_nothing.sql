-- An extract is all or nothing: it ends completed, refused or failed (with a reason), and an operator
-- can withdraw a completed one. Its identity is its content with its source, reference date and
-- target year: the same file with corrected values is a new extract, and a failed attempt can be
-- tried again (a new extract id, so none of the failed attempt's events counts for it).
ALTER TABLE ingest.extracts DROP CONSTRAINT extracts_content_sha256_key;
ALTER TABLE ingest.extracts DROP CONSTRAINT extracts_status_check;
ALTER TABLE ingest.extracts ADD CONSTRAINT extracts_status_check
    CHECK (status IN ('started', 'completed', 'refused', 'failed', 'withdrawn'));
ALTER TABLE ingest.extracts
    ADD COLUMN repeated     integer NOT NULL DEFAULT 0,
    ADD COLUMN published    integer NOT NULL DEFAULT 0,
    ADD COLUMN failure_code text,
    ADD COLUMN failure      text,
    ADD COLUMN ended_at     timestamptz,
    ADD COLUMN ended_by     text,
    ADD COLUMN announced_at timestamptz;
CREATE UNIQUE INDEX extracts_identity ON ingest.extracts (content_sha256, source, reference_date, target_academic_year)
    WHERE status IN ('started', 'completed');
CREATE INDEX extracts_content ON ingest.extracts (content_sha256);
-- Extracts that ended (refused, failed, withdrawn) and whose event is not yet on Kafka.
CREATE INDEX extracts_unannounced ON ingest.extracts (ended_at) WHERE announced_at IS NULL AND ended_at IS NOT NULL;

-- One row per accepted row of an extract: its child (keyed blind index of name and date of birth) and
-- its content (keyed blind index of every ISP field). A row whose content repeats an earlier row's is
-- the same child once; the keys of a completed extract stay until it is deleted, so a replacement can
-- say what it adds, updates and withdraws before it is applied. Logged: a crash must not lose them.
DROP TABLE ingest.row_keys;
CREATE TABLE ingest.row_index (
    extract_id  uuid NOT NULL,
    row_number  integer NOT NULL,
    child_key   text NOT NULL,
    content_key text NOT NULL,
    PRIMARY KEY (extract_id, row_number)
);
CREATE UNIQUE INDEX row_index_content ON ingest.row_index (extract_id, content_key);
CREATE INDEX row_index_child ON ingest.row_index (extract_id, child_key);
