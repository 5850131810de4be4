-- Provider accounts: which plugin serves an account, what it may reach, and its configuration
-- (credentials included), sealed with ChaCha20-Poly1305 under the deployment's secret key
-- (HERMES_SECRET_KEY). The account name is the additional authenticated data, so a sealed config
-- cannot be moved to another account. Hermes processes poll `updated_at` and hot-swap changes.
CREATE TABLE provider_accounts (
    name              text PRIMARY KEY
                      CONSTRAINT provider_accounts_name_format CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    plugin            text NOT NULL,
    -- Lower first; ties by name. The router tries accounts of a channel in this order.
    priority          integer NOT NULL DEFAULT 100,
    allowed_hosts     text[] NOT NULL,
    allow_private     boolean NOT NULL DEFAULT false,
    sealed_config     bytea NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
