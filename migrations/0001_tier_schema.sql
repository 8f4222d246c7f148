-- strata's Postgres tier (docs/TIERS.md). The schema is public: users query it.

-- One row per mirrored Redis key.
CREATE TABLE IF NOT EXISTS strata_entries (
    key        bytea       PRIMARY KEY,
    -- Redis's type name: 'string', 'hash', 'list', 'set', 'zset', 'stream'.
    type       text        NOT NULL,
    -- Strings: the value as Redis stores it (a sealed envelope when a value
    -- transform applies). Other types: a DUMP payload.
    value      bytea       NOT NULL,
    -- NULL: no TTL. A row past its expiry is never served and is swept.
    expires_at timestamptz,
    -- Only grows: a change applies only over an older version.
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS strata_entries_expires_at
    ON strata_entries (expires_at) WHERE expires_at IS NOT NULL;

-- Hashes, field by field (for queries); strata_entries keeps the whole key.
CREATE TABLE IF NOT EXISTS strata_hash_fields (
    key   bytea NOT NULL REFERENCES strata_entries (key) ON DELETE CASCADE,
    field bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (key, field)
);

-- A delete's version, kept for a while after the row is gone, so that a
-- put older than the delete (a write-behind redelivery) cannot bring the
-- key back. Swept after the retention.
CREATE TABLE IF NOT EXISTS strata_tombstones (
    key        bytea       PRIMARY KEY,
    version    bigint      NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS strata_tombstones_deleted_at ON strata_tombstones (deleted_at);

-- Versions for changes strata commits itself (write-through).
CREATE SEQUENCE IF NOT EXISTS strata_version;

-- Changes Postgres rejected permanently (write-behind), with the reason.
CREATE TABLE IF NOT EXISTS strata_dead_letters (
    id         bigserial   PRIMARY KEY,
    key        bytea       NOT NULL,
    type       text,
    value      bytea,
    expires_at timestamptz,
    version    bigint,
    reason     text        NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
