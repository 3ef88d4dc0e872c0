//! `authority.db`'s tables, and the migrations that bring a database to them.

use entraflow_core::sqlite::Migration;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (
  id TEXT PRIMARY KEY, display_name TEXT NOT NULL, domain TEXT NOT NULL UNIQUE COLLATE NOCASE,
  lifetime_min INTEGER NOT NULL, lifetime_max INTEGER NOT NULL, is_default INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS applications (
  object_id TEXT PRIMARY KEY, app_id TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL,
  display_name TEXT NOT NULL, token_version INTEGER NOT NULL, public_client INTEGER NOT NULL,
  group_claims TEXT, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identifier_uris (
  tenant_id TEXT NOT NULL, uri TEXT NOT NULL COLLATE NOCASE, app_id TEXT NOT NULL,
  PRIMARY KEY (tenant_id, uri));
CREATE TABLE IF NOT EXISTS app_roles (
  id TEXT PRIMARY KEY, app_id TEXT NOT NULL, value TEXT NOT NULL, display_name TEXT NOT NULL,
  UNIQUE (app_id, value));
CREATE TABLE IF NOT EXISTS service_principals (
  object_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, tenant_id TEXT NOT NULL,
  display_name TEXT NOT NULL, kind TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1,
  UNIQUE (tenant_id, app_id));
CREATE TABLE IF NOT EXISTS client_secrets (
  id TEXT PRIMARY KEY, app_id TEXT NOT NULL, sha256 BLOB NOT NULL, hint TEXT NOT NULL,
  end_at INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS client_secrets_app ON client_secrets (app_id);
CREATE TABLE IF NOT EXISTS certificates (
  id TEXT PRIMARY KEY, app_id TEXT NOT NULL, der BLOB NOT NULL, sha1 BLOB NOT NULL,
  sha256 BLOB NOT NULL, end_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS certificates_app ON certificates (app_id);
CREATE TABLE IF NOT EXISTS federated_credentials (
  id TEXT PRIMARY KEY, app_id TEXT NOT NULL, name TEXT NOT NULL, issuer TEXT NOT NULL,
  subject TEXT NOT NULL, audiences TEXT NOT NULL, UNIQUE (app_id, name));
CREATE TABLE IF NOT EXISTS trusted_issuers (issuer TEXT PRIMARY KEY, jwks_file TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
  object_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, upn TEXT NOT NULL UNIQUE COLLATE NOCASE,
  display_name TEXT NOT NULL, password_hash TEXT);
CREATE TABLE IF NOT EXISTS groups (
  object_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, display_name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS group_members (
  group_id TEXT NOT NULL, member_id TEXT NOT NULL, PRIMARY KEY (group_id, member_id));
CREATE INDEX IF NOT EXISTS group_members_member ON group_members (member_id);
CREATE TABLE IF NOT EXISTS app_role_assignments (
  id TEXT PRIMARY KEY, principal_id TEXT NOT NULL, resource_app_id TEXT NOT NULL,
  role_id TEXT NOT NULL, UNIQUE (principal_id, resource_app_id, role_id));
CREATE TABLE IF NOT EXISTS managed_identities (
  principal_id TEXT PRIMARY KEY, client_id TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL,
  name TEXT NOT NULL, resource_id TEXT NOT NULL COLLATE NOCASE, host TEXT NOT NULL,
  system_assigned INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS managed_identities_host ON managed_identities (host);
CREATE TABLE IF NOT EXISTS signing_keys (
  kid TEXT PRIMARY KEY, pkcs8 BLOB NOT NULL, cert_der BLOB NOT NULL, created_at INTEGER NOT NULL,
  retires_at INTEGER, activates_at INTEGER);
CREATE TABLE IF NOT EXISTS used_jtis (
  client_id TEXT NOT NULL, jti TEXT NOT NULL, exp INTEGER NOT NULL, PRIMARY KEY (client_id, jti));
CREATE TABLE IF NOT EXISTS device_codes (
  device_code_sha256 BLOB PRIMARY KEY, user_code TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL,
  client_id TEXT NOT NULL, scope TEXT NOT NULL, expires_at INTEGER NOT NULL,
  status TEXT NOT NULL, user_id TEXT);
CREATE TABLE IF NOT EXISTS refresh_tokens (
  sha256 BLOB PRIMARY KEY, tenant_id TEXT NOT NULL, client_id TEXT NOT NULL, user_id TEXT NOT NULL,
  scope TEXT NOT NULL, expires_at INTEGER NOT NULL, confidential INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS redirect_uris (
  app_id TEXT NOT NULL, platform TEXT NOT NULL, uri TEXT NOT NULL, PRIMARY KEY (app_id, platform, uri));
CREATE TABLE IF NOT EXISTS authorization_codes (
  sha256 BLOB PRIMARY KEY, tenant_id TEXT NOT NULL, client_id TEXT NOT NULL, user_id TEXT NOT NULL,
  redirect_uri TEXT NOT NULL, public_client INTEGER NOT NULL, scope TEXT NOT NULL, nonce TEXT,
  code_challenge TEXT, auth_time INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  redeemed INTEGER NOT NULL DEFAULT 0);
"#;

/// `authority.db`'s schema, one step per version (`PRAGMA user_version`, as
/// `gate.db` does): a database is brought forward step by step on open, and
/// one from a newer entraflow is refused. Append steps; never edit one.
pub(super) const MIGRATIONS: [Migration; 1] = [Migration {
    sql: SCHEMA,
    fixup: Some(add_unversioned_columns),
}];

/// Columns added before the schema was versioned: a version-0 database may
/// lack them (its tables predate them), so the first step adds what is missing.
const UNVERSIONED_COLUMNS: [(&str, &str, &str); 2] = [
    ("signing_keys", "activates_at", "INTEGER"),
    (
        "refresh_tokens",
        "confidential",
        "INTEGER NOT NULL DEFAULT 0",
    ),
];

fn add_unversioned_columns(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    for (table, column, decl) in UNVERSIONED_COLUMNS {
        let has: bool = tx
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"
            ))?
            .exists([])?;
        if !has {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}
