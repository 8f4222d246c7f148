-- Checkpoints (`PROXY CHECKPOINT CREATE <pattern>`, docs/TIERS.md): a copy
-- of the keys matching a pattern, as DUMP payloads with their expiry.

CREATE TABLE IF NOT EXISTS strata_checkpoints (
    id           bigserial   PRIMARY KEY,
    -- The SCAN MATCH pattern it was taken with.
    pattern      bytea       NOT NULL,
    -- 'creating' until every key is stored, then 'complete'. Only a
    -- complete checkpoint can be restored.
    state        text        NOT NULL DEFAULT 'creating',
    keys         bigint      NOT NULL DEFAULT 0,
    bytes        bigint      NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);

CREATE TABLE IF NOT EXISTS strata_checkpoint_entries (
    checkpoint_id bigint      NOT NULL REFERENCES strata_checkpoints (id) ON DELETE CASCADE,
    key           bytea       NOT NULL,
    -- Redis's DUMP of the key (tied to Redis's RDB version).
    payload       bytea       NOT NULL,
    -- The key's expiry when it was copied (its PTTL, made absolute); NULL: none.
    expires_at    timestamptz,
    PRIMARY KEY (checkpoint_id, key)
);
