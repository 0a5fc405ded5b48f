-- Within-extract duplicate detection without holding every row in memory: one keyed hash per accepted
-- row while the extract is ingested; emptied when it completes.
CREATE UNLOGGED TABLE ingest.row_keys (
    extract_id  uuid NOT NULL,
    dup_key     text NOT NULL,
    row_number  integer NOT NULL
);
CREATE INDEX row_keys_extract ON ingest.row_keys (extract_id, dup_key);
