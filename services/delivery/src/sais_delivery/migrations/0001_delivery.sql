CREATE TABLE delivery.processed (
    event_id uuid PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now()
);

-- The current cohort as delivery knows it, from cohort events (latest revision wins).
CREATE TABLE delivery.members (
    academic_year  text NOT NULL,
    programme      text NOT NULL,
    dose           integer,
    pupil_id       uuid NOT NULL,
    status         text NOT NULL CHECK (status IN ('active', 'withdrawn')),
    revision       integer NOT NULL,
    school_dfe     text NOT NULL DEFAULT '',
    school_name    text NOT NULL DEFAULT '',
    year_group     text NOT NULL DEFAULT '',
    gender         text NOT NULL DEFAULT '',
    source         text NOT NULL DEFAULT '',
    reference_date date,
    received_at    timestamptz,
    extract_ids    uuid[] NOT NULL DEFAULT '{}',
    key_id         uuid,
    personal       jsonb,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    programme_key  text GENERATED ALWAYS AS (programme || coalesce('-dose-' || dose, '')) STORED,
    PRIMARY KEY (academic_year, programme_key, pupil_id)
);

-- Every batch: recorded before sending, marked sent after the server accepted it.
--   prepared → sending → sent;  sending after a crash = uncertain: an operator resolves it.
CREATE TABLE delivery.batches (
    batch_id        uuid PRIMARY KEY,
    window_name     text NOT NULL,
    academic_year   text NOT NULL,
    recipient       text NOT NULL,
    message_id      text NOT NULL UNIQUE,
    status          text NOT NULL CHECK (status IN ('prepared', 'sending', 'sent', 'failed', 'not-sent')),
    content_sha256  text NOT NULL,
    counts          jsonb NOT NULL,
    files           jsonb NOT NULL,
    extract_ids     uuid[] NOT NULL,
    key_ids         uuid[] NOT NULL,
    pupil_ids       uuid[] NOT NULL,
    replaces_batch  uuid,
    protocol_version text NOT NULL,
    delete_by       date NOT NULL,
    message         bytea,           -- the encrypted S/MIME message, for a retry; dropped when sent
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    prepared_at     timestamptz NOT NULL,
    sent_at         timestamptz,
    smtp_reply      text,
    purged_at       timestamptz
);
CREATE INDEX batches_window ON delivery.batches (window_name, academic_year, status);

CREATE TABLE delivery.control (
    id         integer PRIMARY KEY CHECK (id = 1),
    suspended  boolean NOT NULL,
    reason     text,
    changed_by text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO delivery.control(id, suspended, changed_by) VALUES (1, false, 'install');

CREATE TABLE delivery.outbox (
    seq       bigserial PRIMARY KEY,
    event_id  uuid NOT NULL UNIQUE,
    key       bytea NOT NULL,
    payload   text NOT NULL
);
