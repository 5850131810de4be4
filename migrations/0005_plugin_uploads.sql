-- Plugin versions uploaded through the admin API (PUT /admin/v1/plugins/{name}). The newest upload
-- of a name serves every account of that plugin, ahead of the plugins directory and the built-in;
-- older rows are the rollback history (rolling back deletes the newest). Hermes processes poll the
-- newest digests and load the bytes only when a digest changes.
CREATE TABLE plugin_uploads (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL
                CONSTRAINT plugin_uploads_name_format CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    -- What the plugin's `describe` answered when it was validated.
    version     text NOT NULL,
    sha256      text NOT NULL,
    wasm        bytea NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plugin_uploads_newest ON plugin_uploads (name, id DESC);
