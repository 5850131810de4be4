-- What each provider account charges per message unit (an SMS segment; one per message on other
-- channels) by destination country (ISO 3166-1 alpha-2, "*" for the rest): the router's `cost`
-- strategy picks the cheapest healthy account. Not a secret: stored in the clear.
ALTER TABLE provider_accounts ADD COLUMN prices jsonb NOT NULL DEFAULT '{}'::jsonb
    CONSTRAINT provider_accounts_prices_object CHECK (jsonb_typeof(prices) = 'object');

-- The provider's own send rate for the account (messages per second, its "MPS"): dispatches wait
-- their turn so the provider never has to refuse for rate.
ALTER TABLE provider_accounts ADD COLUMN max_per_second integer
    CONSTRAINT provider_accounts_max_per_second_range CHECK (max_per_second BETWEEN 1 AND 100000);

-- A tenant's own account (its credentials, for its messages only); NULL for a platform account,
-- which serves every tenant. The tenant is bound into the account's seal.
ALTER TABLE provider_accounts ADD COLUMN tenant_id uuid
    CONSTRAINT provider_accounts_tenant_fkey REFERENCES tenants (id);
