CREATE TABLE retention.processed (
    event_id uuid PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now()
);

-- One entry per thing to delete: a transfer (batch) or an extract that was never delivered.
CREATE TABLE retention.schedule (
    subject       text PRIMARY KEY,          -- batch:<id> | extract:<id>
    rule          text NOT NULL,
    due_on        date NOT NULL,
    extract_ids   uuid[] NOT NULL,
    key_ids       uuid[] NOT NULL,
    scheduled_at  timestamptz NOT NULL DEFAULT now(),
    executed_at   timestamptz,
    certificate_id uuid
);
CREATE INDEX schedule_due ON retention.schedule (due_on) WHERE executed_at IS NULL;

CREATE TABLE retention.certificates (
    certificate_id    uuid PRIMARY KEY,
    rule              text NOT NULL,
    subject           text NOT NULL,
    due_on            date NOT NULL,
    executed_at       timestamptz NOT NULL,
    key_ids_destroyed uuid[] NOT NULL,
    keys_retained     jsonb NOT NULL,
    rows_deleted      jsonb NOT NULL,
    protocol_version  text NOT NULL
);

CREATE TABLE retention.outbox (
    seq       bigserial PRIMARY KEY,
    event_id  uuid NOT NULL UNIQUE,
    key       bytea NOT NULL,
    payload   text NOT NULL
);
