CREATE TABLE eligibility.processed (
    event_id uuid PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE eligibility.extracts (
    extract_id     uuid PRIMARY KEY,
    source         text NOT NULL,
    reference_date date NOT NULL,
    academic_year  text NOT NULL,
    accepted       integer NOT NULL,
    supersedes     uuid,
    key_id         uuid NOT NULL,
    completed_at   timestamptz NOT NULL,
    reconciled_at  timestamptz
);

-- One row per accepted pupil row of an extract; personal fields stay sealed under the extract key.
CREATE TABLE eligibility.records (
    record_id       uuid PRIMARY KEY,
    extract_id      uuid NOT NULL,
    academic_year   text NOT NULL,
    pupil_id        uuid NOT NULL,
    match_key       text NOT NULL,
    postcode_key    text NOT NULL,
    content_key     text NOT NULL,
    source          text NOT NULL,
    reference_date  date NOT NULL,
    received_at     timestamptz NOT NULL,
    school_dfe      text NOT NULL,
    school_name     text NOT NULL,
    recorded_year_group text NOT NULL,
    year_group      text NOT NULL,
    dob_year_group  text NOT NULL,
    gender          text NOT NULL,
    key_id          uuid NOT NULL,
    personal        jsonb NOT NULL,
    active          boolean NOT NULL DEFAULT true
);
CREATE INDEX records_match ON eligibility.records (academic_year, match_key) WHERE active;
CREATE INDEX records_pupil ON eligibility.records (pupil_id);
CREATE INDEX records_extract ON eligibility.records (extract_id);

CREATE TABLE eligibility.cohort (
    academic_year text NOT NULL,
    programme     text NOT NULL,
    pupil_id      uuid NOT NULL,
    dose          integer,
    status        text NOT NULL CHECK (status IN ('active', 'withdrawn')),
    fingerprint   text NOT NULL,
    revision      integer NOT NULL,
    record_id     uuid NOT NULL,
    school_dfe    text NOT NULL,
    year_group    text NOT NULL,
    gender        text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (academic_year, programme, pupil_id)
);

CREATE TABLE eligibility.findings (
    academic_year text NOT NULL,
    pupil_id      uuid NOT NULL,
    code          text NOT NULL,
    detail        text NOT NULL,
    school_dfe    text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (academic_year, pupil_id, code)
);

-- Transactional outbox: cohort events are written with the state change, published after commit.
CREATE TABLE eligibility.outbox (
    seq       bigserial PRIMARY KEY,
    event_id  uuid NOT NULL UNIQUE,
    key       bytea NOT NULL,
    payload   text NOT NULL
);
