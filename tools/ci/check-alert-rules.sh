#!/usr/bin/env bash
# Checks the Prometheus configuration and alert rules in infra/prometheus, and runs the rules'
# unit tests. Installs promtool (Debian's `prometheus` package) when it is missing.
#   tools/ci/check-alert-rules.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v promtool >/dev/null 2>&1; then
  # --no-install-recommends: promtool is all that is needed, not the exporters.
  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -n1

promtool check rules infra/prometheus/alerts.yml
promtool test rules infra/prometheus/alerts.test.yml
promtool check config infra/prometheus/prometheus.yml

# Every alert names the runbook section that answers it, and that section exists.
missing=0
while read -r anchor; do
  if ! grep -qiE "^#+ .*\b${anchor}\b" docs/runbooks/alerts.md &&
    ! grep -q "id=\"${anchor}\"" docs/runbooks/alerts.md; then
    echo "docs/runbooks/alerts.md has no section #${anchor}" >&2
    missing=1
  fi
done < <(grep -oE 'runbook: docs/runbooks/alerts\.md#[a-z0-9-]+' infra/prometheus/alerts.yml | sed 's/.*#//')
if [ "$(grep -c '^ *- alert:' infra/prometheus/alerts.yml)" != "$(grep -c 'runbook: docs/runbooks/' infra/prometheus/alerts.yml)" ]; then
  echo "every alert in infra/prometheus/alerts.yml needs a runbook annotation" >&2
  missing=1
fi
exit "$missing"
