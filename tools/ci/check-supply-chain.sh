#!/usr/bin/env bash
# The supply chain, checked offline with cargo deny (deny.toml): every dependency's licence is
# one Hermes allows, no banned crate (a second TLS stack), no source but crates.io. For the main
# workspace and for the provider plugins' workspace (adapters/plugins), each with its own lock.
# The advisory check needs the RustSec database from the network: see README, "Supply chain".
set -euo pipefail
cd "$(dirname "$0")/../.."

CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
  cargo install "cargo-deny@$CARGO_DENY_VERSION" --locked
fi
for manifest in Cargo.toml adapters/plugins/Cargo.toml; do
  echo "cargo deny: $manifest"
  cargo deny --manifest-path "$manifest" --locked --config deny.toml check \
    --show-stats licenses bans sources
done

# The check can fail: without MIT in the allowed list, the main workspace (hundreds of MIT crates)
# must be refused. A config cargo deny misread would otherwise pass everything.
strict=$(mktemp --suffix=.toml)
trap 'rm -f "$strict"' EXIT
grep -v '^    "MIT",$' deny.toml >"$strict"
if cargo deny --manifest-path Cargo.toml --locked --config "$strict" check licenses >/dev/null 2>&1; then
  echo "cargo deny accepted MIT crates with MIT not allowed: the licence check is not working"
  exit 1
fi
echo "cargo deny: refuses a licence not allowed (checked)"
