-- Which child goes in which part is written once per batch, 100,000 rows and more, while the operator's
-- send waits (issue 28). The foreign key checked each row in a trigger of its own (a third of the insert)
-- and a second index kept each row twice. The members of a batch go with it by hand now (dropping a
-- batch, and retention's deletion, delete them first), and one key serves the part's read, in file
-- order. The plan puts each child in one part: a school's runs of rows never overlap.
ALTER TABLE delivery.batch_members DROP CONSTRAINT batch_members_batch_id_fkey;
ALTER TABLE delivery.batch_members DROP CONSTRAINT batch_members_pkey;
DROP INDEX delivery.batch_members_part;
ALTER TABLE delivery.batch_members ADD PRIMARY KEY (batch_id, part_no, programme_key, pupil_id);
