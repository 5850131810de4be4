-- Tenants are event-sourced (stream_type 'tenant', stream_id = tenant id): created, renamed,
-- suspended, reactivated, deactivated, settings changed, keys issued, rotated and revoked. The
-- `tenants` and `api_keys` tables are their read model, written in the same transaction as the
-- events (infra/src/tenants/), and what authentication reads.
ALTER TABLE tenants
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CONSTRAINT tenants_status_check CHECK (status IN ('active', 'suspended', 'deactivated')),
    ADD COLUMN settings jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN version bigint NOT NULL DEFAULT 0,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- A rotated key keeps working until then (the rotation's overlap).
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;

-- Tenants made before their history was recorded get one, from what the tables say: created,
-- then each key issued (and revoked) in time order.
WITH history AS (
    SELECT t.id AS tenant_id, 0 AS kind, t.created_at AS at, NULL::uuid AS key_id,
           'TenantCreated' AS event_type,
           jsonb_build_object('type', 'TenantCreated', 'name', t.name) AS payload
      FROM tenants t
    UNION ALL
    SELECT k.tenant_id, 1, k.created_at, k.id, 'ApiKeyIssued',
           jsonb_strip_nulls(jsonb_build_object('type', 'ApiKeyIssued', 'key_id', k.id,
               'prefix', k.prefix, 'name', k.name, 'key_hash', encode(k.key_hash, 'hex')))
      FROM api_keys k
    UNION ALL
    SELECT k.tenant_id, 2, k.revoked_at, k.id, 'ApiKeyRevoked',
           jsonb_build_object('type', 'ApiKeyRevoked', 'key_id', k.id)
      FROM api_keys k WHERE k.revoked_at IS NOT NULL
), numbered AS (
    SELECT h.*, row_number() OVER (PARTITION BY tenant_id ORDER BY kind > 0, at, kind, key_id) AS v
      FROM history h
)
INSERT INTO events (tenant_id, stream_type, stream_id, stream_version, event_id, event_type,
                    schema_version, payload, metadata, recorded_at)
SELECT tenant_id, 'tenant', tenant_id, v, gen_random_uuid(), event_type, 1, payload,
       '{"actor": "migration"}', at
  FROM numbered;

UPDATE tenants t
   SET version = (SELECT count(*) FROM events e WHERE e.stream_id = t.id AND e.stream_type = 'tenant');
