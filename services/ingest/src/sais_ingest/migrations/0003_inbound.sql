-- Extracts arriving as events: staged (still sealed) until extract-completed proves them complete.
CREATE TABLE ingest.inbound_extracts (
    extract_ref       text PRIMARY KEY,
    source            text NOT NULL,
    reference_date    date NOT NULL,
    originator_system text NOT NULL,
    started           jsonb NOT NULL,
    status            text NOT NULL CHECK (status IN ('receiving', 'incomplete', 'ingested')),
    problem           text,
    extract_id        uuid,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ingest.inbound_records (
    extract_ref  text NOT NULL REFERENCES ingest.inbound_extracts(extract_ref) ON DELETE CASCADE,
    seq          integer NOT NULL,
    nonce        text NOT NULL,
    ciphertext   text NOT NULL,
    PRIMARY KEY (extract_ref, seq)
);
