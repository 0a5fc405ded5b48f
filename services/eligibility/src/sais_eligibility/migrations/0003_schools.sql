-- The schools register: one row per DfE number (LA code + establishment number), from the DfE's
-- "Get Information about Schools" establishment export (sais schools load). Eligibility reads it to
-- tell a school a child has left (the year group the child moves into is outside its age range) and
-- to flag closed schools and schools outside the authority; cohort records carry the URN from it.
CREATE TABLE eligibility.schools (
    dfe          text PRIMARY KEY CHECK (dfe ~ '^\d{7}$'),
    urn          text NOT NULL CHECK (urn ~ '^\d{6}$'),
    name         text NOT NULL,
    la_code      text NOT NULL,
    status       text NOT NULL,
    phase        text NOT NULL,
    first_year   text,            -- year group taught from the statutory low age (R for 4)
    last_year    text,            -- year group taught to the statutory high age (6 for 11)
    close_date   date,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    load_id      uuid NOT NULL
);

-- Findings that no longer hold (the October census gave the child's new school) are cleared.
CREATE INDEX findings_pupil ON eligibility.findings (academic_year, pupil_id);
