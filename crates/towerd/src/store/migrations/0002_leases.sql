-- Work shared by replicas: a lease per site (and per rollout's image pull), held by one
-- towerd until it expires unless renewed. Expiry is the database's clock.
CREATE TABLE leases (
    key text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- The inventory's version, bumped in the transaction of each change of a site, so that
-- a replica reads the sites again only when another changed them (and sees the change
-- once it is committed).
CREATE TABLE inventory (
    only_row boolean PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    version bigint NOT NULL
);
INSERT INTO inventory (version) VALUES (0);
CREATE FUNCTION inventory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE inventory SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER sites_changed AFTER INSERT OR UPDATE OR DELETE ON sites
    FOR EACH STATEMENT EXECUTE FUNCTION inventory_changed();
