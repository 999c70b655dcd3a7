-- The tower's records: each a jsonb document keyed by its id.
CREATE TABLE sites (
    id text PRIMARY KEY,
    record jsonb NOT NULL
);
-- Names are unique, whichever replica writes.
CREATE UNIQUE INDEX sites_name ON sites ((record ->> 'name'));
-- Filters (`@>` on labels, metadata, names) are answered from this index.
CREATE INDEX sites_record ON sites USING gin (record jsonb_path_ops);

-- A rollout's header (without its sites)...
CREATE TABLE rollouts (
    id text PRIMARY KEY,
    record jsonb NOT NULL
);
-- ...and one row per site of it, written alone as the site progresses.
CREATE TABLE rollout_sites (
    rollout text NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    site text NOT NULL,
    progress jsonb NOT NULL,
    PRIMARY KEY (rollout, site)
);

-- The manifests rollouts deliver, exact bytes by digest.
CREATE TABLE manifests (
    digest text PRIMARY KEY,
    body bytea NOT NULL
);
