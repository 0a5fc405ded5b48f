-- Bounded inbound staging (security review, finding 6): each extract counts the bytes of the records
-- staged for it, and a record that would take it over SAIS_INGEST_INBOUND_MAX_EXTRACT_BYTES is not
-- staged (the extract then completes as incomplete, naming what is missing).
ALTER TABLE ingest.inbound_extracts ADD COLUMN staged_bytes bigint NOT NULL DEFAULT 0;
UPDATE ingest.inbound_extracts x SET staged_bytes = coalesce(
    (SELECT sum(length(r.nonce) + length(r.ciphertext)) FROM ingest.inbound_records r WHERE r.extract_ref = x.extract_ref), 0);
