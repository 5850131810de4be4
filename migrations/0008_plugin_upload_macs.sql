-- Uploaded plugin versions are authenticated: `mac` is an HMAC-SHA256, under a key derived from
-- HERMES_SECRET_KEY, of the upload's name, version and SHA-256 digest (see
-- infra/src/plugin_uploads.rs). A row without one, or whose bytes or tag do not match, is not
-- served, so write access to this table alone can no longer swap the code that receives the
-- accounts' credentials. Rows uploaded before this migration have none: upload them again.
ALTER TABLE plugin_uploads ADD COLUMN mac bytea;
