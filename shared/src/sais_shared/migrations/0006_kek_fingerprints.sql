-- KEK ids are labels an operator chooses; a key's fingerprint (sais_shared.crypto.kek_fingerprint, one
-- way) names the key itself. Each data key records both, and the store refuses a writer whose label and
-- key disagree with what the store already holds: the same id for another key (a new KEK left under the
-- old id would wrap new data keys that nothing else opens) or the same key under another id.
ALTER TABLE shared.data_keys ADD COLUMN kek_fingerprint text CHECK (kek_fingerprint ~ '^[0-9a-f]{32}$');

DROP FUNCTION shared.create_data_key(uuid, uuid, text, bytea);
CREATE FUNCTION shared.create_data_key(p_key_id uuid, p_extract_id uuid, p_kek_id text, p_kek_fingerprint text,
                                       p_wrapped bytea)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, shared AS $$
DECLARE
    other record;
BEGIN
    SELECT k.kek_id, k.kek_fingerprint INTO other FROM shared.data_keys k
     WHERE (k.kek_id = p_kek_id AND k.kek_fingerprint <> p_kek_fingerprint)
        OR (k.kek_fingerprint = p_kek_fingerprint AND k.kek_id <> p_kek_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'KEK % (fingerprint %) contradicts the key store, where % has fingerprint %',
            p_kek_id, p_kek_fingerprint, other.kek_id, other.kek_fingerprint USING ERRCODE = 'SAK01';
    END IF;
    INSERT INTO shared.data_keys(key_id, extract_id, kek_id, kek_fingerprint, wrapped)
    VALUES (p_key_id, p_extract_id, p_kek_id, p_kek_fingerprint, p_wrapped) ON CONFLICT (extract_id) DO NOTHING;
    RETURN FOUND;
END
$$;
REVOKE ALL ON FUNCTION shared.create_data_key(uuid, uuid, text, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shared.create_data_key(uuid, uuid, text, text, bytea) TO sais_ingest;
