-- Eligibility's coverage check of each academic year's rules against a protocol version (the
-- coverage-checked events on the cohort topic): delivery warns, and says so in the manifest, when
-- it sends a year whose cohort the protocol in force leaves incomplete.
CREATE TABLE delivery.coverage (
    academic_year    text NOT NULL,
    protocol_id      text NOT NULL,
    protocol_version text NOT NULL,
    gaps             jsonb NOT NULL,
    checked_at       timestamptz NOT NULL,
    PRIMARY KEY (academic_year, protocol_id, protocol_version)
);
