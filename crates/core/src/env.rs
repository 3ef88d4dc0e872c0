//! Environment variable names, as azure-identity spells them, plus entraflow's own.

/// Application (client) id.
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// Tenant id.
pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
/// Client secret (discouraged; prefer certificates or workload identity).
pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
/// Path of a PEM (or PKCS#12) file with the client certificate and its key.
pub const AZURE_CLIENT_CERTIFICATE_PATH: &str = "AZURE_CLIENT_CERTIFICATE_PATH";
/// Password of the certificate file.
pub const AZURE_CLIENT_CERTIFICATE_PASSWORD: &str = "AZURE_CLIENT_CERTIFICATE_PASSWORD";
/// Send the certificate chain (`x5c`) with assertions.
pub const AZURE_CLIENT_SEND_CERTIFICATE_CHAIN: &str = "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN";
/// Workload identity: path of the projected service-account token.
pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// Authority host, e.g. `https://login.microsoftonline.com`.
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
/// App Service / Container Apps managed identity endpoint.
pub const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
/// App Service / Container Apps managed identity header value.
pub const IDENTITY_HEADER: &str = "IDENTITY_HEADER";
/// Overrides the IMDS host (azure-identity honours it for pod identity).
pub const AZURE_POD_IDENTITY_AUTHORITY_HOST: &str = "AZURE_POD_IDENTITY_AUTHORITY_HOST";
/// Where entraflow keeps state.
pub const ENTRAFLOW_DATA_DIR: &str = "ENTRAFLOW_DATA_DIR";
/// The gate's account URL (`https://127.0.0.1:PORT/<account>`).
pub const ENTRAFLOW_BLOB_ENDPOINT: &str = "ENTRAFLOW_BLOB_ENDPOINT";
/// The storage account's full Azure scope.
pub const ENTRAFLOW_STORAGE_SCOPE: &str = "ENTRAFLOW_STORAGE_SCOPE";
/// The gate's admin API base URL (`https://127.0.0.1:PORT`), where ARM-shaped
/// `<scope>/providers/Microsoft.Authorization/...` paths go, as under
/// `https://management.azure.com`.
pub const ENTRAFLOW_ADMIN_ENDPOINT: &str = "ENTRAFLOW_ADMIN_ENDPOINT";
/// The gate's health and metrics listener (`http://127.0.0.1:PORT`: `/livez`,
/// `/readyz`, `/metrics`), plain HTTP on a port of its own.
pub const ENTRAFLOW_GATE_HEALTH_URL: &str = "ENTRAFLOW_GATE_HEALTH_URL";
/// The security team's web console (`https://127.0.0.1:PORT`), where people sign
/// in with Entra to read the audit log.
pub const ENTRAFLOW_CONSOLE_URL: &str = "ENTRAFLOW_CONSOLE_URL";
/// Training run id sent with every data request.
pub const ENTRAFLOW_RUN_ID: &str = "ENTRAFLOW_RUN_ID";
/// Opts a process into the node-local shared token cache: `1` (the default directory
/// for this user) or a directory. Every process of one user that sets it shares one
/// refresh per (tenant, client, scopes, claims); see `entraflow_credential::SharedTokenStore`.
pub const ENTRAFLOW_SHARED_TOKEN_CACHE: &str = "ENTRAFLOW_SHARED_TOKEN_CACHE";
/// CA bundle file honoured by rustls-native-certs and OpenSSL.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// CA bundle file honoured by Python requests.
pub const REQUESTS_CA_BUNDLE: &str = "REQUESTS_CA_BUNDLE";
