-- Security incidents under ISP §16: who found what, when; the 72-hour ICO decision; the outcome.
CREATE TABLE delivery.breaches (
    breach_id         uuid PRIMARY KEY,
    what              text NOT NULL,
    discovered_at     timestamptz NOT NULL,
    discovered_by     text NOT NULL,
    reported_at       timestamptz NOT NULL,
    reported_by       text NOT NULL,
    ico_decision_due  timestamptz NOT NULL,
    notified          jsonb NOT NULL DEFAULT '[]'::jsonb,
    ico_notified      boolean,
    outcome           text,
    closed_at         timestamptz,
    closed_by         text,
    resumed           boolean
);
