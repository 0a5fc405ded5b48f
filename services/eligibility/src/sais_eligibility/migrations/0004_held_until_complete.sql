-- All or nothing: an extract's records are held (recorded and matched, but in no cohort) until its
-- extract-completed event has come and every one of its pupil events is recorded, with the same
-- count and checksum; then they are released, children in chunks (released_through: the last
-- pupil id done, so a restart resumes). A refused or failed extract's records are discarded; a
-- withdrawn one's retired.
ALTER TABLE eligibility.extracts
    ADD COLUMN status           text NOT NULL DEFAULT 'completed'
        CHECK (status IN ('completed', 'failed', 'withdrawn')),
    ADD COLUMN records_digest   numeric(20, 0),
    ADD COLUMN released_at      timestamptz,
    ADD COLUMN released_through uuid,
    ADD COLUMN ended_reason     text;
ALTER TABLE eligibility.extracts ALTER COLUMN accepted DROP NOT NULL;
ALTER TABLE eligibility.extracts ALTER COLUMN completed_at DROP NOT NULL;
UPDATE eligibility.extracts SET released_at = reconciled_at WHERE reconciled_at IS NOT NULL;

-- Per extract: pupil events recorded and the sum of their record-id digests (mod 2^64), kept by the
-- batch that records them, so the readiness check reads one row instead of counting records.
CREATE TABLE eligibility.extract_progress (
    extract_id uuid PRIMARY KEY,
    recorded   integer NOT NULL DEFAULT 0,
    digest     numeric(20, 0) NOT NULL DEFAULT 0
);
INSERT INTO eligibility.extract_progress(extract_id, recorded)
    SELECT extract_id, count(*) FROM eligibility.records GROUP BY extract_id;

-- What matching found about a record (postcode differs, ambiguous, out of year group): written to
-- findings when its extract is released, never before.
ALTER TABLE eligibility.records ADD COLUMN match_findings jsonb NOT NULL DEFAULT '[]';

-- A child's memberships by year (the primary key leads with the programme).
CREATE INDEX cohort_pupil ON eligibility.cohort (academic_year, pupil_id);
-- A released (or withdrawn) extract's children are walked in pupil id order, a chunk at a time.
CREATE INDEX records_extract_pupil ON eligibility.records (extract_id, pupil_id);
DROP INDEX eligibility.records_extract;
