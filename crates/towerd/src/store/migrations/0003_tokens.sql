-- Who may use the API: bearer tokens, kept as the SHA-256 of the token (never the
-- token itself), each with a name to revoke it by and a role.
CREATE TABLE tokens (
    name text PRIMARY KEY,
    role text NOT NULL CHECK (role IN ('read', 'write')),
    hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
