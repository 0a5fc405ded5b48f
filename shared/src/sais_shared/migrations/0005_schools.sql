-- The schools register, from the DfE's "Get Information about Schools" establishment export
-- (`sais schools load`): one row per DfE number (LA code + establishment number). Reference data
-- like the protocol registry: written by the administrator, read by eligibility (age ranges: which
-- school a rolled-forward child has left) and delivery (URNs for the Mavis files).
CREATE TABLE shared.schools (
    dfe          text PRIMARY KEY CHECK (dfe ~ '^\d{7}$'),
    urn          text NOT NULL CHECK (urn ~ '^\d{6}$'),
    name         text NOT NULL,
    la_code      text NOT NULL,
    status       text NOT NULL,
    phase        text NOT NULL,
    first_year   text,
    last_year    text,
    close_date   date
);

-- One row per load: what file, how many schools, by whom (the audit log has the same).
CREATE TABLE shared.school_register_loads (
    seq        bigserial PRIMARY KEY,
    sha256     text NOT NULL,
    origin     text NOT NULL,
    schools    integer NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now(),
    loaded_by  text NOT NULL
);

REVOKE ALL ON shared.schools, shared.school_register_loads FROM PUBLIC;
GRANT SELECT ON shared.schools, shared.school_register_loads TO sais_eligibility, sais_delivery;
