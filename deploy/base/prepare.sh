#!/bin/sh
# Lays out one gate pod's data directory before `entraflow gate serve` starts,
# and refuses a configuration that would run but be wrong. Runs as the gate's
# own user in the same image (the data directory must be its own: the gate
# makes it 0700).
set -eu

fail() { echo "entraflow-gate prepare: $*" >&2; exit 1; }

case "${GATE_TRUSTED_AUTHORITY}${GATE_TENANT}" in
  *REPLACE*) fail "GATE_TRUSTED_AUTHORITY='${GATE_TRUSTED_AUTHORITY}' GATE_TENANT='${GATE_TENANT}': set the authority host and tenant id in the overlay's entraflow-gate-config" ;;
esac
if [ "${GATE_BACKEND}" = "file:///var/lib/entraflow/blobs" ] && [ "${GATE_ALLOW_SCRATCH_BACKEND}" != "true" ]; then
  fail "GATE_BACKEND is this pod's scratch volume: replicas would each hold different blobs; set GATE_BACKEND to shared storage (deploy/overlays/azure-storage) or, for one replica only, GATE_ALLOW_SCRATCH_BACKEND=true"
fi

install -d -m 0700 "${ENTRAFLOW_DATA_DIR}"
# The gate mints its HTTPS leaf certificate from the CA it finds here (ca.pem,
# ca-key.pem), so every replica serves a certificate clients trust with one
# ca.pem. The key stays in this pod's memory-backed volume.
install -m 0644 /etc/entraflow/ca/tls.crt "${ENTRAFLOW_DATA_DIR}/ca.pem"
install -m 0600 /etc/entraflow/ca/tls.key "${ENTRAFLOW_DATA_DIR}/ca-key.pem"
# One checkpoint-signing key for every replica, kept outside the pods, so
# checkpoints stay verifiable after a pod is gone.
install -m 0600 /etc/entraflow/audit-key/audit-key.pk8 "${ENTRAFLOW_DATA_DIR}/audit-key.pk8"
install -m 0644 /etc/entraflow/audit-key/audit-key.pub "${ENTRAFLOW_DATA_DIR}/audit-key.pub"

# The role assignments, into this replica's rbac.db.
sh -eu /etc/entraflow/policy/assignments.sh
echo "entraflow-gate prepare: data directory ${ENTRAFLOW_DATA_DIR} ready; role assignments:"
entraflow role assignment list --only-show-errors -o table || true
