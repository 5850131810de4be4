-- API keys are listed, named and revoked by operators (`hermes tenant key ...`). A name tells keys
-- apart ("ci", "billing service"); revocation already sets `revoked_at` (0002).
ALTER TABLE api_keys ADD COLUMN name text CHECK (length(name) BETWEEN 1 AND 200);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at);
