#!/bin/sh
# Lays out one gate pod's data directory before `entraflow gate serve` starts,
# and refuses a configuration that would run but be wrong. Runs as the gate's
# own user in the same image (the data directory must be its own: the gate
# makes it 0700).
set -eu

fail() { echo "entraflow-gate prepare: $*" >&2; exit 1; }
# Where the pod mounts the CA, audit-key and policy volumes (a test runs this
# script against a temporary tree).
etc=${ENTRAFLOW_PREPARE_ETC:-/etc/entraflow}

# Placeholders left in the overlay's entraflow-gate-config (every key of it is
# in this environment).
placeholders=$(env | grep -E '^(GATE_|AZURE_)[A-Z_]*=.*REPLACE' | cut -d= -f1 | tr '\n' ' ' || true)
[ -z "${placeholders}" ] || fail "still placeholders in entraflow-gate-config: ${placeholders}; set them in the overlay (docs/scale-out.md)"
if [ "${GATE_BACKEND}" = "file:///var/lib/entraflow/blobs" ] && [ "${GATE_ALLOW_SCRATCH_BACKEND}" != "true" ]; then
  fail "GATE_BACKEND is this pod's scratch volume: replicas would each hold different blobs; set GATE_BACKEND to shared storage (deploy/overlays/azure-storage) or, for one replica only, GATE_ALLOW_SCRATCH_BACKEND=true"
fi

install -d -m 0700 "${ENTRAFLOW_DATA_DIR}"
# The gate mints its HTTPS leaf certificate from the CA it finds here (ca.pem,
# ca-key.pem), so every replica serves a certificate clients trust with one
# ca.pem. The key stays in this pod's memory-backed volume.
install -m 0644 "${etc}"/ca/tls.crt "${ENTRAFLOW_DATA_DIR}/ca.pem"
install -m 0600 "${etc}"/ca/tls.key "${ENTRAFLOW_DATA_DIR}/ca-key.pem"
# One checkpoint-signing key for every replica, kept outside the pods, so
# checkpoints stay verifiable after a pod is gone.
install -m 0600 "${etc}"/audit-key/audit-key.pk8 "${ENTRAFLOW_DATA_DIR}/audit-key.pk8"
install -m 0644 "${etc}"/audit-key/audit-key.pub "${ENTRAFLOW_DATA_DIR}/audit-key.pub"

# The role assignments, into this replica's rbac.db.
sh -eu "${etc}"/policy/assignments.sh
echo "entraflow-gate prepare: data directory ${ENTRAFLOW_DATA_DIR} ready; role assignments:"
entraflow role assignment list --only-show-errors -o table
