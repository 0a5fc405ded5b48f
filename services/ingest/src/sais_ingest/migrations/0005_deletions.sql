-- Deletions this service carried out for retention (deletion by events): one row per request,
-- written in the same transaction as the deletes; a redelivered request is confirmed from here.
CREATE TABLE ingest.deletions (
    request_id   uuid PRIMARY KEY,
    subject      text NOT NULL,
    rows_deleted jsonb NOT NULL,
    deleted_at   timestamptz NOT NULL DEFAULT now()
);
