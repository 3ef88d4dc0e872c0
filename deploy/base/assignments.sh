# Role assignments each gate replica loads into its own rbac.db at start, one
# `entraflow role assignment create` per line (idempotent: an identical
# assignment is kept, as az does). Overlays replace this file.
#
# None here: the gate then refuses every request with 403 naming the missing
# role, which is the safe default.
#
# Form (see docs/scale-out.md):
# entraflow role assignment create --only-show-errors \
#   --assignee-object-id <principal object id> --assignee-principal-type ServicePrincipal \
#   --role "Storage Blob Data Reader" \
#   --scope "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Storage/storageAccounts/<account>/blobServices/default/containers/<container>"
:
