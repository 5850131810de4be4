#!/usr/bin/env bash
# The deployment's artifacts, checked offline:
# - every Kubernetes manifest in infra/k8s validates against the Kubernetes schemas (strict: a field
#   the schema does not know is an error), with kubernetes-validate from PyPI (pinned);
# - the kustomization lists every manifest, and only those;
# - the image (Dockerfile) runs as a non-root user.
set -euo pipefail
cd "$(dirname "$0")/../.."

python3 tools/ensure_venv.py tools/k8s-validate
validate=tools/k8s-validate/.venv/bin/kubernetes-validate
manifests=$(ls infra/k8s/*.yaml | grep -v kustomization.yaml)
# shellcheck disable=SC2086
"$validate" --strict $manifests

listed=$(sed -n '/^resources:/,/^[a-z]/p' infra/k8s/kustomization.yaml | sed -n 's/^  - //p' | sort)
present=$(for m in $manifests; do basename "$m"; done | sort)
if [ "$listed" != "$present" ]; then
  echo "infra/k8s/kustomization.yaml lists:"; echo "$listed"
  echo "but infra/k8s holds:"; echo "$present"
  exit 1
fi

# The last USER of the Dockerfile's final stage is the image's user.
user=$(awk '/^FROM /{user=""} /^USER /{user=$2} END{print user}' Dockerfile)
case "${user%%:*}" in
  "" | root | 0)
    echo "Dockerfile: the image runs as root (USER is '${user:-unset}')"
    exit 1
    ;;
esac
echo "manifests valid; the image runs as $user"
