//! The SQL gate: PostgreSQL's wire protocol (v3) in front of any PostgreSQL, with
//! an Entra access token as the password, as Azure Database for PostgreSQL
//! flexible server takes it.
//!
//! A client (psql, psycopg, tokio-postgres) connects with TLS, signs in with the
//! Entra principal's name as the user and a token for
//! `https://ossrdbms-aad.database.windows.net` as the password. The gate verifies
//! the token exactly as the Blob gate does, checks that the user name is mapped
//! (`entraflow sql principal create`) to the token's principal or to a group in its
//! `groups` claim, authorizes [`CONNECT_ACTION`] at the database's Azure scope,
//! and only then signs in to the backend as the mapped role and relays. Refusals
//! are PostgreSQL errors: `28P01` for a token that is not accepted, `28000` for a
//! name that is not the token's principal or not mapped, `42501` when RBAC says no;
//! a missing GRANT is PostgreSQL's own `42501`, relayed. Every session and every
//! statement (literals redacted) is on the audit chain `entraflow/sql-gate`.
//!
//! Rooms: `codec` (framing and size limits), `refusal` (`ErrorResponse`s and the
//! guard's `Wire`), `principals` (the name → role mapping), `state` (what sessions
//! share), `session` (one connection up to the relay), `backend` (signing in to
//! PostgreSQL), `relay` (traffic and statement audit), `redact` (literals out),
//! `server` (the listener).

mod backend;
mod codec;
mod config;
mod error;
mod principals;
mod redact;
mod refusal;
mod relay;
mod server;
mod session;
mod state;

pub use config::{DEFAULT_SERVER, SQL_GATE_ENV_FILE, SqlGateConfig};
pub use error::SqlGateError;
pub use principals::{MappedPrincipal, PrincipalStore, PrincipalType, SQL_DB_FILE};
pub use relay::{STATEMENT, STATEMENT_COMPLETED};
pub use server::{BackendConnections, SqlGate, serve};
pub use session::{CONNECT_ACTION, SESSION_END, SESSION_REFUSED, SESSION_START};
