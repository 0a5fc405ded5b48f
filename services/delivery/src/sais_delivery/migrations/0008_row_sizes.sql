-- The bytes a member's row takes in the programme file and in a Mavis file, measured when its cohort
-- event is applied (the consumer opens it once), so that planning a batch sums them instead of opening
-- every member again. NULL: stored before this, or did not open; planning then opens and measures it.
-- The lengths of a rendered row say no more than the length of its ciphertext already does.
ALTER TABLE delivery.members ADD COLUMN csv_bytes integer, ADD COLUMN mavis_bytes integer;
