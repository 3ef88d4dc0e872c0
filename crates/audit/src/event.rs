//! What an audit event says, and the exact bytes it is stored and hashed as.
//!
//! A writer fills an [`Event`]; the log wraps it in a [`Record`] (schema version,
//! chain, position, unique id) and stores the record's canonical JSON: keys sorted,
//! no whitespace, absent fields left out. The Merkle leaf is the hash of exactly
//! those stored bytes, so `verify` recomputes everything from what is in the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Version of the record layout written by this crate. Version 2 added the blob
/// version fields (`operation`, `etag`, `content_md5`, `copy_source`,
/// `copy_source_etag`); a version 1 record never has them. Both are read, and a
/// record's bytes are never rewritten, so a version 1 record keeps its hash.
pub const SCHEMA_VERSION: u32 = 2;

/// What happened. Serialized as a dotted name (`blob.read`); names this version does
/// not know are kept as [`EventType::Other`] so that older readers can still read and
/// verify newer logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// Get Blob, Get Blob Properties.
    BlobRead,
    /// Put Blob, Put Block, Put Block List, Copy Blob (destination).
    BlobWrite,
    /// Delete Blob.
    BlobDelete,
    /// List Blobs.
    BlobList,
    /// Create Container.
    ContainerCreate,
    /// Delete Container.
    ContainerDelete,
    /// List Containers.
    ContainerList,
    /// The authority issued a token.
    TokenIssued,
    /// The authority refused a token request.
    TokenRefused,
    /// A role definition or assignment (or another admin object) changed.
    AdminChange,
    /// A request was authenticated but no role assignment granted it.
    AuthzDenied,
    /// A request carried no valid token.
    AuthnFailed,
    /// A type this version does not know.
    Other(String),
}

impl EventType {
    /// Every type this version knows, for help texts and tests.
    pub const KNOWN: [EventType; 12] = [
        EventType::BlobRead,
        EventType::BlobWrite,
        EventType::BlobDelete,
        EventType::BlobList,
        EventType::ContainerCreate,
        EventType::ContainerDelete,
        EventType::ContainerList,
        EventType::TokenIssued,
        EventType::TokenRefused,
        EventType::AdminChange,
        EventType::AuthzDenied,
        EventType::AuthnFailed,
    ];

    /// The dotted name stored in the log.
    pub fn as_str(&self) -> &str {
        match self {
            EventType::BlobRead => "blob.read",
            EventType::BlobWrite => "blob.write",
            EventType::BlobDelete => "blob.delete",
            EventType::BlobList => "blob.list",
            EventType::ContainerCreate => "container.create",
            EventType::ContainerDelete => "container.delete",
            EventType::ContainerList => "container.list",
            EventType::TokenIssued => "token.issued",
            EventType::TokenRefused => "token.refused",
            EventType::AdminChange => "admin.change",
            EventType::AuthzDenied => "authz.denied",
            EventType::AuthnFailed => "authn.failed",
            EventType::Other(name) => name,
        }
    }

    /// Whether the event changed data (for the summary's "wrote" column).
    pub fn is_data_write(&self) -> bool {
        matches!(
            self,
            EventType::BlobWrite
                | EventType::BlobDelete
                | EventType::ContainerCreate
                | EventType::ContainerDelete
        )
    }
}

impl From<&str> for EventType {
    fn from(name: &str) -> EventType {
        EventType::KNOWN
            .iter()
            .find(|t| t.as_str() == name)
            .cloned()
            .unwrap_or_else(|| EventType::Other(name.to_owned()))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(EventType::from(name.as_str()))
    }
}

/// The outcome of an authorization decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// A role assignment granted the action.
    Allow,
    /// Nothing granted it (or authentication failed).
    Deny,
}

impl Decision {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

impl FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Decision::Allow),
            "deny" => Ok(Decision::Deny),
            other => Err(format!("'{other}' is not a decision; use allow or deny")),
        }
    }
}

/// Who made the request, as the token named them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Object id (`oid`) of the user, service principal or managed identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// Application (client) id (`appid`/`azp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// Display name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Principal {
    /// The most specific identifier: oid, else appid, else name, else `-`.
    pub fn label(&self) -> &str {
        self.oid
            .as_deref()
            .or(self.appid.as_deref())
            .or(self.name.as_deref())
            .unwrap_or("-")
    }
}

/// A UTC instant with millisecond precision, written as RFC 3339
/// (`2026-11-26T16:38:36.123Z`); this fixed width makes text order time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Now, truncated to milliseconds.
    pub fn now() -> Timestamp {
        Timestamp::from(OffsetDateTime::now_utc())
    }

    /// The instant.
    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Timestamp {
        let t = t.to_offset(time::UtcOffset::UTC);
        let ms = t.millisecond();
        Timestamp(t.replace_millisecond(ms).expect("millisecond in range"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl FromStr for Timestamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Timestamp::from)
            .map_err(|e| format!("'{s}' is not an RFC 3339 time ({e})"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One audited occurrence, as a writer (the gate, the authority) describes it.
/// Fields that do not apply stay `None` and are absent from the stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// When it happened.
    pub time: Timestamp,
    /// What happened.
    pub event_type: EventType,
    /// The request id the service returned (`x-ms-request-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Tenant (`tid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// The token's `uti` (unique token identifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_uti: Option<String>,
    /// The Azure (data) action, e.g. `Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Full Azure scope of the object acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Allowed or denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Id of the role assignment that granted the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_id: Option<String>,
    /// Name of the role that granted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// HTTP status returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Body bytes transferred (read or written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// How long the request took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Client address (`ip:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// `User-Agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Training run id the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Free text, e.g. why a request was denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A SQL statement as the SQL gate received it (literals redacted unless the
    /// gate is told to keep full text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// Rows a SQL statement returned or affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// The SQLSTATE of a SQL error (the message is not kept: it can quote literals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// List Blobs' `prefix` (absent when the whole container was listed): what
    /// `@Request[...blobs:prefix]` conditions saw, so a replay sees it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The Blob REST operation, by its name in Azure's REST reference (`GetBlob`,
    /// `PutBlob`, `PutBlockList`, `CopyBlob`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The blob version acted on: the ETag a read served, or the ETag a write
    /// produced (quoted, as the `ETag` header has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Base64 MD5 of that version's content: computed by the gate over the bytes
    /// it wrote (Put Blob, Put Block List), else the blob's `Content-MD5` property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<String>,
    /// Copy Blob: the source blob's full Azure scope (never the URL the client
    /// sent, which may carry a SAS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_source: Option<String>,
    /// Copy Blob: the ETag of the source version that was copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_source_etag: Option<String>,
}

impl Event {
    /// An event of `event_type` happening now, with every optional field absent.
    pub fn new(event_type: EventType) -> Event {
        Event {
            time: Timestamp::now(),
            event_type,
            request_id: None,
            tenant: None,
            principal: None,
            token_uti: None,
            action: None,
            resource: None,
            decision: None,
            assignment_id: None,
            role_name: None,
            status: None,
            bytes: None,
            duration_ms: None,
            client_addr: None,
            user_agent: None,
            run_id: None,
            detail: None,
            statement: None,
            rows: None,
            sqlstate: None,
            prefix: None,
            operation: None,
            etag: None,
            content_md5: None,
            copy_source: None,
            copy_source_etag: None,
        }
    }
}

impl Event {
    /// Empty strings become absent fields, and a principal with no field at all
    /// becomes no principal: the stored record never says `""`.
    pub(crate) fn normalize(&mut self) {
        fn clear(field: &mut Option<String>) {
            if field.as_deref() == Some("") {
                *field = None;
            }
        }
        for field in [
            &mut self.request_id,
            &mut self.tenant,
            &mut self.token_uti,
            &mut self.action,
            &mut self.resource,
            &mut self.assignment_id,
            &mut self.role_name,
            &mut self.client_addr,
            &mut self.user_agent,
            &mut self.run_id,
            &mut self.detail,
            &mut self.statement,
            &mut self.sqlstate,
            &mut self.operation,
            &mut self.etag,
            &mut self.content_md5,
            &mut self.copy_source,
            &mut self.copy_source_etag,
        ] {
            clear(field);
        }
        if let Some(p) = &mut self.principal {
            clear(&mut p.oid);
            clear(&mut p.appid);
            clear(&mut p.name);
            if p.oid.is_none() && p.appid.is_none() && p.name.is_none() {
                self.principal = None;
            }
        }
    }
}

/// An event as stored: the event plus the schema version, the chain (`log`) it
/// belongs to, its position (`seq`, the Merkle leaf index) and a unique id. Putting
/// chain and position inside the hashed bytes makes a moved or reordered row
/// detectable on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Layout version ([`SCHEMA_VERSION`]).
    pub schema: u32,
    /// The chain (log id / checkpoint origin).
    pub log: String,
    /// Position in the chain, from 0.
    pub seq: u64,
    /// Unique id, returned to the writer when the event is durable.
    pub id: Uuid,
    /// The event itself.
    #[serde(flatten)]
    pub event: Event,
}

impl Record {
    /// The canonical bytes: JSON with sorted keys and no whitespace.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let value = serde_json::to_value(self).expect("a record always serializes");
        canonical_json(&value)
    }

    /// Parses stored bytes.
    pub fn parse(bytes: &[u8]) -> Result<Record, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Deterministic JSON: object keys sorted by their bytes, no whitespace, strings
/// escaped as serde_json escapes them. Independent of serde_json's `preserve_order`.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("writing to a Vec");
                out.push(b':');
                write_canonical(val, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec"),
    }
}

/// The container and the blob path of a Blob resource scope
/// (`.../containers/<c>/blobs/<path>`), when the scope names one.
pub fn container_and_blob(resource: &str) -> Option<(&str, Option<&str>)> {
    let (_, rest) = resource.split_once("/containers/")?;
    match rest.split_once("/blobs/") {
        Some((container, blob)) => Some((container, Some(blob))),
        None => Some((rest.trim_end_matches('/'), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let mut event = Event::new(EventType::BlobRead);
        event.time = "2026-11-26T16:38:36.123456Z".parse().unwrap();
        event.principal = Some(Principal {
            oid: Some("oid-1".into()),
            appid: None,
            name: Some("trainer é".into()),
        });
        event.decision = Some(Decision::Allow);
        event.status = Some(200);
        event.bytes = Some(4096);
        Record {
            schema: SCHEMA_VERSION,
            log: "entraflow/gate/a".into(),
            seq: 7,
            id: Uuid::nil(),
            event,
        }
    }

    #[test]
    fn canonical_bytes_are_sorted_compact_and_omit_absent_fields() {
        let bytes = sample().canonical_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            "{\"bytes\":4096,\"decision\":\"allow\",\"event_type\":\"blob.read\",\
             \"id\":\"00000000-0000-0000-0000-000000000000\",\"log\":\"entraflow/gate/a\",\
             \"principal\":{\"name\":\"trainer é\",\"oid\":\"oid-1\"},\"schema\":2,\"seq\":7,\
             \"status\":200,\"time\":\"2026-11-26T16:38:36.123Z\"}"
        );
        // Parsing and re-encoding is a fixed point, which the JSON-lines export needs.
        let parsed = Record::parse(&bytes).unwrap();
        assert_eq!(parsed, sample());
        assert_eq!(parsed.canonical_bytes(), bytes);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(canonical_json(&value), bytes);
    }

    /// A record written before blob versions were recorded (schema 1) still parses,
    /// and re-encodes to exactly its stored bytes, so its leaf hash is unchanged;
    /// the new fields, when present, are inside the hashed bytes.
    #[test]
    fn schema_1_records_keep_their_bytes_and_schema_2_fields_are_hashed() {
        let v1 = "{\"bytes\":4096,\"decision\":\"allow\",\"event_type\":\"blob.read\",\
                  \"id\":\"00000000-0000-0000-0000-000000000000\",\"log\":\"entraflow/gate\",\
                  \"schema\":1,\"seq\":3,\"time\":\"2026-11-26T16:38:36.123Z\"}";
        let record = Record::parse(v1.as_bytes()).unwrap();
        assert_eq!(record.schema, 1);
        assert_eq!(record.event.etag, None);
        assert_eq!(record.canonical_bytes(), v1.as_bytes());

        let mut with_version = sample();
        with_version.event.operation = Some("GetBlob".into());
        with_version.event.etag = Some("\"0x8D1\"".into());
        with_version.event.content_md5 = Some("q2=".into());
        let text = String::from_utf8(with_version.canonical_bytes()).unwrap();
        assert!(
            text.contains("\"content_md5\":\"q2=\",\"decision\"")
                && text.contains("\"etag\":\"\\\"0x8D1\\\"\"")
                && text.contains("\"operation\":\"GetBlob\""),
            "{text}"
        );
        assert_ne!(with_version.canonical_bytes(), sample().canonical_bytes());
        assert_eq!(
            Record::parse(text.as_bytes()).unwrap().canonical_bytes(),
            text.as_bytes()
        );
    }

    #[test]
    fn empty_fields_are_stored_as_absent() {
        let mut event = Event::new(EventType::TokenRefused);
        event.user_agent = Some(String::new());
        event.detail = Some("AADSTS7000215".into());
        event.principal = Some(Principal {
            oid: None,
            appid: Some(String::new()),
            name: None,
        });
        event.normalize();
        assert_eq!(event.user_agent, None);
        assert_eq!(event.principal, None);
        assert_eq!(event.detail.as_deref(), Some("AADSTS7000215"));
    }

    #[test]
    fn unknown_event_types_survive() {
        let t: EventType = serde_json::from_str("\"sql.query\"").unwrap();
        assert_eq!(t, EventType::Other("sql.query".into()));
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"sql.query\"");
        for known in EventType::KNOWN {
            assert_eq!(EventType::from(known.as_str()), known);
        }
    }

    #[test]
    fn timestamps_are_fixed_width_utc_milliseconds() {
        let t: Timestamp = "2026-01-02T03:04:05+02:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-01-02T01:04:05.000Z");
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn resource_scopes_split_into_container_and_blob() {
        let scope = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a/blobServices/default/containers/data/blobs/train/x.tfrecord";
        assert_eq!(
            container_and_blob(scope),
            Some(("data", Some("train/x.tfrecord")))
        );
        assert_eq!(
            container_and_blob(
                "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a/blobServices/default/containers/data"
            ),
            Some(("data", None))
        );
        assert_eq!(container_and_blob("/subscriptions/s"), None);
    }
}
