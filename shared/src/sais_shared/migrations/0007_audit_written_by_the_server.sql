-- The audit trail's facts come from the server, not from the writer (security review, finding 5).
-- Services used to INSERT into shared.audit_log themselves, with every column and the id sequence
-- granted: a role could backdate an entry under any name, take the ids others were about to use, or
-- hold the chain's advisory lock (any role may take an advisory lock) and stall every audited change.
-- Now:
-- * they call shared.audit(...) (SECURITY DEFINER) and hold no privilege on the table or its sequence;
-- * the chain trigger sets the id, the time and the login role (session_user) itself, whoever inserts;
-- * the chain is serialised by a lock on its head row, which only the owner can read or lock;
-- * each new row's hash also covers that login role (concat_ws leaves a NULL out, so rows written before
--   keep the text they were hashed with), and `sais audit verify` computes the text in Python from the
--   raw columns instead of calling a function the database could have redefined.

ALTER TABLE shared.audit_log ADD COLUMN db_role text;

CREATE TABLE shared.audit_head (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    chain_seq  bigint NOT NULL,
    row_hash   bytea NOT NULL
);
INSERT INTO shared.audit_head (chain_seq, row_hash)
SELECT coalesce(max(chain_seq), 0),
       coalesce((SELECT row_hash FROM shared.audit_log ORDER BY chain_seq DESC NULLS LAST LIMIT 1), '\x'::bytea)
FROM shared.audit_log;
REVOKE ALL ON shared.audit_head FROM PUBLIC;

CREATE OR REPLACE FUNCTION shared.audit_log_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, shared AS $$
DECLARE
    head record;
BEGIN
    SELECT h.chain_seq, h.row_hash INTO STRICT head FROM shared.audit_head h FOR UPDATE;
    NEW.id := nextval('shared.audit_log_id_seq');
    NEW.at := now();
    NEW.db_role := session_user;
    NEW.details := coalesce(NEW.details, '{}'::jsonb);
    NEW.chain_seq := head.chain_seq + 1;
    NEW.prev_hash := head.row_hash;
    NEW.row_hash := sha256(NEW.prev_hash || convert_to(concat_ws(E'\x1f', NEW.chain_seq::text,
        ((extract(epoch FROM NEW.at) * 1000000)::bigint)::text, NEW.actor, NEW.action, NEW.subject,
        NEW.details::text, coalesce(NEW.protocol_version, ''), NEW.db_role), 'UTF8'));
    UPDATE shared.audit_head SET chain_seq = NEW.chain_seq, row_hash = NEW.row_hash;
    RETURN NEW;
END $$;

DROP FUNCTION shared.audit_row_text(bigint, timestamptz, text, text, text, jsonb, text);

CREATE FUNCTION shared.audit(p_actor text, p_action text, p_subject text, p_details jsonb, p_protocol_version text)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, shared AS $$
    INSERT INTO shared.audit_log(actor, action, subject, details, protocol_version)
    VALUES (p_actor, p_action, p_subject, coalesce(p_details, '{}'::jsonb), p_protocol_version)
$$;
REVOKE ALL ON FUNCTION shared.audit(text, text, text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shared.audit(text, text, text, jsonb, text)
    TO sais_ingest, sais_eligibility, sais_delivery, sais_retention;
REVOKE INSERT ON shared.audit_log FROM sais_ingest, sais_eligibility, sais_delivery, sais_retention;
REVOKE USAGE ON SEQUENCE shared.audit_log_id_seq FROM sais_ingest, sais_eligibility, sais_delivery, sais_retention;
