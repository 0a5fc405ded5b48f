-- Least privilege (run by the administrator; the service roles exist: sais_ingest, sais_eligibility,
-- sais_delivery, sais_retention).

-- 1. Data keys: no service reads or writes shared.data_keys directly. Each role may call only the
--    key-store functions it needs; they run as this schema's owner (SECURITY DEFINER) with a fixed
--    search_path, and never return a destroyed key.
REVOKE ALL ON shared.data_keys FROM PUBLIC;

CREATE FUNCTION shared.create_data_key(p_key_id uuid, p_extract_id uuid, p_kek_id text, p_wrapped bytea)
RETURNS boolean LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, shared AS $$
    WITH ins AS (
        INSERT INTO shared.data_keys(key_id, extract_id, kek_id, wrapped)
        VALUES (p_key_id, p_extract_id, p_kek_id, p_wrapped) ON CONFLICT (extract_id) DO NOTHING RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM ins)
$$;

-- The wrapped form of live keys, and which of the asked-for keys are destroyed (wrapped IS NULL).
CREATE FUNCTION shared.wrapped_data_keys(p_key_ids uuid[])
RETURNS TABLE (key_id uuid, wrapped bytea) LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, shared AS $$
    SELECT k.key_id, k.wrapped FROM shared.data_keys k WHERE k.key_id = ANY(p_key_ids)
$$;

CREATE FUNCTION shared.live_data_keys()
RETURNS TABLE (key_id uuid, extract_id uuid) LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, shared AS $$
    SELECT k.key_id, k.extract_id FROM shared.data_keys k WHERE k.wrapped IS NOT NULL ORDER BY k.created_at
$$;

CREATE FUNCTION shared.destroy_data_keys(p_key_ids uuid[], p_by text)
RETURNS SETOF uuid LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, shared AS $$
    UPDATE shared.data_keys SET wrapped = NULL, destroyed_at = now(), destroyed_by = p_by
    WHERE key_id = ANY(p_key_ids) AND wrapped IS NOT NULL RETURNING key_id
$$;

REVOKE ALL ON FUNCTION shared.create_data_key(uuid, uuid, text, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION shared.wrapped_data_keys(uuid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION shared.live_data_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION shared.destroy_data_keys(uuid[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shared.create_data_key(uuid, uuid, text, bytea) TO sais_ingest;
GRANT EXECUTE ON FUNCTION shared.wrapped_data_keys(uuid[]) TO sais_ingest, sais_eligibility, sais_delivery;
GRANT EXECUTE ON FUNCTION shared.live_data_keys() TO sais_retention;
GRANT EXECUTE ON FUNCTION shared.destroy_data_keys(uuid[], text) TO sais_retention;

-- 2. The audit log: INSERT only, for every role; a hash chain makes a removed or altered row visible.
--    Each row's hash covers its content and the previous row's hash; rows are chained in commit
--    order (an advisory lock held to the end of the inserting transaction).
ALTER TABLE shared.audit_log ADD COLUMN chain_seq bigint UNIQUE;
ALTER TABLE shared.audit_log ADD COLUMN prev_hash bytea;
ALTER TABLE shared.audit_log ADD COLUMN row_hash bytea;

CREATE FUNCTION shared.audit_row_text(seq bigint, at timestamptz, actor text, action text, subject text,
                                      details jsonb, protocol_version text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
    SELECT concat_ws(E'\x1f', seq::text, ((extract(epoch FROM at) * 1000000)::bigint)::text, actor, action,
                     subject, details::text, coalesce(protocol_version, ''))
$$;

CREATE FUNCTION shared.audit_log_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, shared AS $$
DECLARE
    last record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('shared.audit_log chain'));
    SELECT chain_seq, row_hash INTO last FROM shared.audit_log ORDER BY chain_seq DESC NULLS LAST LIMIT 1;
    NEW.chain_seq := coalesce(last.chain_seq, 0) + 1;
    NEW.prev_hash := coalesce(last.row_hash, '\x'::bytea);
    NEW.at := coalesce(NEW.at, now());
    NEW.details := coalesce(NEW.details, '{}'::jsonb);
    NEW.row_hash := sha256(NEW.prev_hash || convert_to(shared.audit_row_text(
        NEW.chain_seq, NEW.at, NEW.actor, NEW.action, NEW.subject, NEW.details, NEW.protocol_version), 'UTF8'));
    RETURN NEW;
END $$;

-- Rows written before the chain existed are chained now, in id order.
DO $$
DECLARE
    r record;
    prev bytea := '\x'::bytea;
    n bigint := 0;
BEGIN
    FOR r IN SELECT * FROM shared.audit_log ORDER BY id LOOP
        n := n + 1;
        EXECUTE 'ALTER TABLE shared.audit_log DISABLE TRIGGER audit_log_append_only';
        UPDATE shared.audit_log SET chain_seq = n, prev_hash = prev, row_hash = sha256(prev || convert_to(
            shared.audit_row_text(n, r.at, r.actor, r.action, r.subject, r.details, r.protocol_version), 'UTF8'))
        WHERE id = r.id RETURNING row_hash INTO prev;
        EXECUTE 'ALTER TABLE shared.audit_log ENABLE TRIGGER audit_log_append_only';
    END LOOP;
END $$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON shared.audit_log
    FOR EACH ROW EXECUTE FUNCTION shared.audit_log_chain();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON shared.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION shared.audit_log_append_only();

REVOKE ALL ON shared.audit_log FROM PUBLIC;
GRANT INSERT ON shared.audit_log TO sais_ingest, sais_eligibility, sais_delivery, sais_retention;
GRANT USAGE ON SEQUENCE shared.audit_log_id_seq TO sais_ingest, sais_eligibility, sais_delivery, sais_retention;

-- 3. The protocol registry and the installation id: read by every service, written by the administrator.
REVOKE ALL ON shared.protocols, shared.installation FROM PUBLIC;
GRANT SELECT ON shared.protocols, shared.installation, shared.schema_migrations
    TO sais_ingest, sais_eligibility, sais_delivery, sais_retention;
