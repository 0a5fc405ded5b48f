-- A record's sealed personal fields are stored as the text they came as: PostgreSQL never looks inside
-- them, and jsonb parsed every one on the way in and wrote it out again on the way back (issue 28).
ALTER TABLE eligibility.records ALTER COLUMN personal TYPE text;
-- The release walk asks each chunk of children which of their records matching said something about;
-- few do, so a partial index answers without reading the chunk's records.
CREATE INDEX records_with_findings ON eligibility.records (extract_id, pupil_id) WHERE match_findings <> '[]'::jsonb;
