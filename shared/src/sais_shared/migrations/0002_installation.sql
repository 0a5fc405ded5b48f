-- A random id per installation: ids derived from content (batches, Message-IDs) stay stable within one
-- installation and never collide with another installation's.
CREATE TABLE shared.installation (
    id          integer PRIMARY KEY CHECK (id = 1),
    installation_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO shared.installation(id) VALUES (1);
