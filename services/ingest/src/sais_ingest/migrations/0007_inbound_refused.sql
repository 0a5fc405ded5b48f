-- An inbound extract that is refused (checksum, signature, a record that does not open, the protocol or
-- the file's rules) keeps nothing: its staged records and its wrapped extract key are deleted at once,
-- and it starts again only when it is sent again whole (from extract-started). One that is incomplete
-- (records missing) keeps what it has, so the publisher can send what was missing.
ALTER TABLE ingest.inbound_extracts DROP CONSTRAINT inbound_extracts_status_check;
ALTER TABLE ingest.inbound_extracts ADD CONSTRAINT inbound_extracts_status_check
    CHECK (status IN ('receiving', 'incomplete', 'refused', 'ingested'));
