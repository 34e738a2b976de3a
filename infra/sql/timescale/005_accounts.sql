-- Player accounts of the gateway's accounts service (streams/security/accounts.py).
-- Passwords are Argon2id hashes (the PHC string argon2-cffi writes); refresh tokens are
-- stored as their SHA-256 only, so this table cannot be used to log in.

CREATE TABLE IF NOT EXISTS accounts (
    player_id     text        PRIMARY KEY,
    username      text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,
    role          text        NOT NULL DEFAULT 'player' CHECK (role IN ('player', 'operator')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);

-- One row per refresh token ever issued. A family is one login's chain of rotations:
-- each refresh marks its token used and adds the next; presenting a used token again
-- (a stolen copy) revokes the whole family.
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash bytea       PRIMARY KEY,
    family_id  uuid        NOT NULL,
    player_id  text        NOT NULL REFERENCES accounts (player_id),
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens (family_id);
