-- The audit log in Postgres (`[audit] postgres = true`): one row per event,
-- the same fields as the JSON line in `detail`. Never values or passwords.
CREATE TABLE IF NOT EXISTS strata_audit (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL,
    event     text        NOT NULL,
    client_id bigint,
    detail    jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS strata_audit_at ON strata_audit (at);
CREATE INDEX IF NOT EXISTS strata_audit_event ON strata_audit (event, at);
