CREATE TABLE shared.data_keys (
    key_id        uuid PRIMARY KEY,
    extract_id    uuid NOT NULL UNIQUE,
    kek_id        text NOT NULL,
    wrapped       bytea,              -- NULL once destroyed: the data it protected is unreadable
    created_at    timestamptz NOT NULL DEFAULT now(),
    destroyed_at  timestamptz,
    destroyed_by  text
);

-- Append-only: no UPDATE or DELETE is ever issued on it; it holds ids and counts, never personal data.
CREATE TABLE shared.audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    subject     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    protocol_version text
);
CREATE INDEX audit_log_action_at ON shared.audit_log (action, at);

CREATE OR REPLACE FUNCTION shared.audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'shared.audit_log is append-only';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON shared.audit_log
    FOR EACH ROW EXECUTE FUNCTION shared.audit_log_append_only();
