-- Every protocol version ever loaded; the one in force is the most recently loaded.
CREATE TABLE shared.protocols (
    seq          bigserial PRIMARY KEY,
    protocol_id  text NOT NULL,
    version      text NOT NULL,
    sha256       text NOT NULL,
    content      text NOT NULL,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    loaded_by    text NOT NULL
);
