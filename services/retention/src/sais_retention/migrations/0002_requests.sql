-- Deletion by events: retention destroys the data keys, then asks each owning service to delete its
-- rows; the certificate is written once every owner has confirmed.
ALTER TABLE retention.schedule ADD COLUMN requested_at timestamptz;

CREATE TABLE retention.requests (
    request_id        uuid PRIMARY KEY,
    subject           text NOT NULL UNIQUE,
    rule              text NOT NULL,
    due_on            date NOT NULL,
    owners            text[] NOT NULL,
    key_ids_destroyed uuid[] NOT NULL,
    keys_retained     jsonb NOT NULL,
    requested_at      timestamptz NOT NULL,
    completed_at      timestamptz,
    certificate_id    uuid
);
CREATE INDEX requests_open ON retention.requests (requested_at) WHERE completed_at IS NULL;

CREATE TABLE retention.confirmations (
    request_id   uuid NOT NULL REFERENCES retention.requests,
    service      text NOT NULL,
    rows_deleted jsonb NOT NULL,
    confirmed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, service)
);

CREATE TABLE retention.requests_outbox (
    seq       bigserial PRIMARY KEY,
    event_id  uuid NOT NULL UNIQUE,
    key       bytea NOT NULL,
    payload   text NOT NULL
);
