# Role assignments every gate replica loads at start (into its own rbac.db).
# Mirror what you granted in Azure (docs/scale-out.md, step 5): the training
# job's service principal reads its container, and writes only under models/.
#
# Uncomment and fill in; <trainer object id> is the principalId printed by
# `az identity show` (or the service principal's id for an app registration).
#
# SCOPE=/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Storage/storageAccounts/<account>/blobServices/default/containers/<container>
# entraflow role assignment create --only-show-errors \
#   --assignee-object-id <trainer object id> --assignee-principal-type ServicePrincipal \
#   --role "Storage Blob Data Reader" --scope "$SCOPE"
# entraflow role assignment create --only-show-errors \
#   --assignee-object-id <trainer object id> --assignee-principal-type ServicePrincipal \
#   --role "Storage Blob Data Contributor" --scope "$SCOPE" --condition-version 2.0 \
#   --condition "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'}) AND !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'}) AND !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete'})) OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike 'models/*'))"
:
