CREATE TABLE ingest.extracts (
    extract_id            uuid PRIMARY KEY,
    content_sha256        text NOT NULL UNIQUE,
    source                text NOT NULL,
    reference_date        date NOT NULL,
    target_academic_year  text NOT NULL,
    file_name             text NOT NULL,
    encoding              text NOT NULL,
    status                text NOT NULL CHECK (status IN ('started', 'completed')),
    rows_in               integer NOT NULL DEFAULT 0,
    accepted              integer NOT NULL DEFAULT 0,
    rejected              integer NOT NULL DEFAULT 0,
    out_of_scope          integer NOT NULL DEFAULT 0,
    warnings              integer NOT NULL DEFAULT 0,
    dropped_columns       text[] NOT NULL DEFAULT '{}',
    supersedes            uuid REFERENCES ingest.extracts(extract_id),
    key_id                uuid NOT NULL,
    originator            text NOT NULL,
    protocol_version      text NOT NULL,
    ingested_by           text NOT NULL,
    started_at            timestamptz NOT NULL DEFAULT now(),
    completed_at          timestamptz,
    purged_at             timestamptz
);
CREATE INDEX extracts_source_ref ON ingest.extracts (source, reference_date, completed_at);

-- Rejections and warnings: row, field, rule and a reason that never quotes the value.
CREATE TABLE ingest.row_problems (
    extract_id  uuid NOT NULL REFERENCES ingest.extracts(extract_id) ON DELETE CASCADE,
    row_number  integer NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('rejected', 'warning')),
    field       text NOT NULL,
    code        text NOT NULL,
    reason      text NOT NULL
);
CREATE INDEX row_problems_extract ON ingest.row_problems (extract_id, row_number);
