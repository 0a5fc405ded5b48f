-- ISP §9.3: a few accepted rows per extract kept for spot-checking; sealed under the extract's key.
CREATE TABLE ingest.dip_samples (
    extract_id  uuid NOT NULL REFERENCES ingest.extracts(extract_id) ON DELETE CASCADE,
    row_number  integer NOT NULL,
    school_dfe  text NOT NULL,
    year_group  text NOT NULL,
    gender      text NOT NULL,
    personal    jsonb NOT NULL,
    PRIMARY KEY (extract_id, row_number)
);
