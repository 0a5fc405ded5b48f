-- A member's sealed personal fields are stored as the text they came as: PostgreSQL never looks inside
-- them, and jsonb parsed every one on the way in and wrote it out again on the way back (issue 28).
ALTER TABLE delivery.members ALTER COLUMN personal TYPE text;
