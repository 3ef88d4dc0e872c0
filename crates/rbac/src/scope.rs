//! Azure resource scopes, from `/` down to a blob container or a PostgreSQL
//! flexible server's database (the SQL gate's scope), plus entraflow's own audit
//! log resource (`.../providers/Entraflow.Audit/auditLogs/<name>`), the scope the
//! console authorizes reading the evidence at.
//!
//! Azure compares scopes case-insensitively and a scope contains another when it
//! is a prefix of it *on segment boundaries*: `.../containers/train` contains
//! nothing in `.../containers/train-secret`.

use std::fmt;
use std::sync::Arc;

use thiserror::Error;

/// How deep a scope reaches, from the broadest to the narrowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeLevel {
    /// `/`: the whole tenant.
    Root,
    /// `/subscriptions/<id>`.
    Subscription,
    /// `/subscriptions/<id>/resourceGroups/<rg>`.
    ResourceGroup,
    /// `.../providers/Microsoft.Storage/storageAccounts/<account>`.
    StorageAccount,
    /// `.../blobServices/default`.
    BlobService,
    /// `.../blobServices/default/containers/<container>`.
    Container,
    /// `.../providers/Microsoft.DBforPostgreSQL/flexibleServers/<server>`.
    PostgresServer,
    /// `.../flexibleServers/<server>/databases/<database>`.
    PostgresDatabase,
    /// `.../providers/Entraflow.Audit/auditLogs/<name>`: the audit log the
    /// console reads (entraflow's own resource type; Azure has none for it).
    AuditLog,
}

impl ScopeLevel {
    /// Lower-case name used in messages and lint output.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeLevel::Root => "root",
            ScopeLevel::Subscription => "subscription",
            ScopeLevel::ResourceGroup => "resource group",
            ScopeLevel::StorageAccount => "storage account",
            ScopeLevel::BlobService => "blob service",
            ScopeLevel::Container => "container",
            ScopeLevel::PostgresServer => "PostgreSQL server",
            ScopeLevel::PostgresDatabase => "PostgreSQL database",
            ScopeLevel::AuditLog => "audit log",
        }
    }
}

/// Why a string is not a scope entraflow understands.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeError {
    /// The scope is empty or does not start with `/`.
    #[error(
        "scope '{scope}' must start with '/' (e.g. '/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Storage/storageAccounts/<account>')"
    )]
    NotAbsolute {
        /// The scope as given.
        scope: String,
    },
    /// A segment is not the one Azure puts at that position.
    #[error("scope '{scope}': expected '{expected}' at segment {index}, found '{found}'")]
    UnexpectedSegment {
        /// The scope as given.
        scope: String,
        /// 1-based segment number.
        index: usize,
        /// What Azure puts there.
        expected: &'static str,
        /// What the scope has there.
        found: String,
    },
    /// A name (subscription id, group, account, container) is missing or empty.
    #[error("scope '{scope}': the {what} name is missing after '{after}'")]
    MissingName {
        /// The scope as given.
        scope: String,
        /// Which name is missing.
        what: &'static str,
        /// The keyword it should follow.
        after: &'static str,
    },
    /// A name breaks Azure's naming rules for what it names.
    #[error("scope '{scope}': {what} '{name}' is not valid: {rule}")]
    InvalidName {
        /// The scope as given.
        scope: String,
        /// What the name is.
        what: &'static str,
        /// The name.
        name: String,
        /// Azure's rule.
        rule: &'static str,
    },
    /// More segments than a container or database scope has (blobs are not
    /// scopes in Azure).
    #[error(
        "scope '{scope}' goes below a blob container or database; role assignments stop at '.../blobServices/default/containers/<container>' and '.../flexibleServers/<server>/databases/<database>'"
    )]
    TooDeep {
        /// The scope as given.
        scope: String,
    },
}

/// Azure Storage's account names: 3–24 lowercase letters and digits.
pub fn valid_account_name(name: &str) -> bool {
    (3..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Azure's container names: 3–63 characters, lowercase letters, digits and
/// single hyphens, starting and ending with a letter or digit (the service's
/// own `$root` and `$logs` are not served, so not accepted either).
pub fn valid_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// A parsed, normalised Azure scope. Cheap to clone.
///
/// Keywords get Azure's canonical casing (`resourceGroups`, `Microsoft.Storage`,
/// `storageAccounts`, ...); names keep the case they were given, and comparison
/// ignores case, as Azure does.
#[derive(Clone)]
pub struct Scope {
    text: Arc<str>,
    key: Arc<str>,
    level: ScopeLevel,
}

/// A keyword, what the name after it is, and the level that name reaches.
type Keyword = (&'static str, &'static str, ScopeLevel);

// The canonical keyword expected before each name, in order, with what the name is.
const ABOVE_PROVIDERS: [Keyword; 2] = [
    ("subscriptions", "subscription", ScopeLevel::Subscription),
    (
        "resourceGroups",
        "resource group",
        ScopeLevel::ResourceGroup,
    ),
];

// Below `providers/<namespace>`, each namespace has its own chain.
const STORAGE: [Keyword; 3] = [
    (
        "storageAccounts",
        "storage account",
        ScopeLevel::StorageAccount,
    ),
    ("blobServices", "blob service", ScopeLevel::BlobService),
    ("containers", "container", ScopeLevel::Container),
];
const POSTGRES: [Keyword; 2] = [
    (
        "flexibleServers",
        "PostgreSQL server",
        ScopeLevel::PostgresServer,
    ),
    ("databases", "database", ScopeLevel::PostgresDatabase),
];
const AUDIT: [Keyword; 1] = [("auditLogs", "audit log", ScopeLevel::AuditLog)];
const PROVIDERS: [(&str, &[Keyword]); 3] = [
    ("Microsoft.Storage", &STORAGE),
    ("Microsoft.DBforPostgreSQL", &POSTGRES),
    (AUDIT_PROVIDER, &AUDIT),
];

/// The resource provider namespace of entraflow's audit log.
pub const AUDIT_PROVIDER: &str = "Entraflow.Audit";

impl Scope {
    /// The root scope `/`.
    pub fn root() -> Self {
        Self::from_parts(Vec::new(), ScopeLevel::Root)
    }

    /// Parses and normalises a scope. A trailing `/` is ignored.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let raw = input.trim();
        if !raw.starts_with('/') {
            return Err(ScopeError::NotAbsolute {
                scope: input.to_owned(),
            });
        }
        let trimmed = raw.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(Self::root());
        }
        let segments: Vec<&str> = trimmed[1..].split('/').collect();
        let mut out: Vec<String> = Vec::with_capacity(segments.len());
        let mut level = ScopeLevel::Root;
        let mut i = 0;
        let err_seg =
            |index: usize, expected: &'static str, found: &str| ScopeError::UnexpectedSegment {
                scope: input.to_owned(),
                index: index + 1,
                expected,
                found: found.to_owned(),
            };
        // Takes `keyword/name` pairs of `chain` while segments remain.
        let take = |chain: &[Keyword],
                    i: &mut usize,
                    out: &mut Vec<String>,
                    level: &mut ScopeLevel|
         -> Result<(), ScopeError> {
            for (keyword, what, next_level) in chain {
                if *i >= segments.len() {
                    break;
                }
                if !segments[*i].eq_ignore_ascii_case(keyword) {
                    return Err(err_seg(*i, keyword, segments[*i]));
                }
                out.push((*keyword).to_owned());
                *i += 1;
                let name = match segments.get(*i) {
                    Some(name) if !name.trim().is_empty() => *name,
                    _ => {
                        return Err(ScopeError::MissingName {
                            scope: input.to_owned(),
                            what,
                            after: keyword,
                        });
                    }
                };
                if *next_level == ScopeLevel::BlobService && !name.eq_ignore_ascii_case("default") {
                    return Err(err_seg(*i, "default", name));
                }
                out.push(if *next_level == ScopeLevel::BlobService {
                    "default".to_owned()
                } else {
                    name.to_owned()
                });
                *i += 1;
                *level = *next_level;
            }
            Ok(())
        };
        take(&ABOVE_PROVIDERS, &mut i, &mut out, &mut level)?;
        if i < segments.len() {
            // A resource sits under `providers/<namespace>`.
            if !segments[i].eq_ignore_ascii_case("providers") {
                return Err(err_seg(i, "providers", segments[i]));
            }
            out.push("providers".to_owned());
            i += 1;
            let chain = match segments.get(i) {
                Some(ns) => match PROVIDERS.iter().find(|(p, _)| ns.eq_ignore_ascii_case(p)) {
                    Some((namespace, chain)) => {
                        out.push((*namespace).to_owned());
                        i += 1;
                        *chain
                    }
                    None => {
                        return Err(err_seg(
                            i,
                            "Microsoft.Storage', 'Microsoft.DBforPostgreSQL' or 'Entraflow.Audit",
                            ns,
                        ));
                    }
                },
                None => {
                    return Err(ScopeError::MissingName {
                        scope: input.to_owned(),
                        what: "resource provider",
                        after: "providers",
                    });
                }
            };
            if i >= segments.len() {
                return Err(ScopeError::MissingName {
                    scope: input.to_owned(),
                    what: "resource type",
                    after: "the provider namespace",
                });
            }
            take(chain, &mut i, &mut out, &mut level)?;
        }
        if i < segments.len() {
            return Err(ScopeError::TooDeep {
                scope: input.to_owned(),
            });
        }
        Ok(Self::from_parts(out, level))
    }

    /// Checks the names against Azure's rules: a subscription is a GUID; a
    /// resource group has 1–90 letters, digits, `_`, `-`, `.`, `(`, `)` and does
    /// not end in `.`; a storage account and a container follow
    /// [`valid_account_name`] and [`valid_container_name`]. Done before an
    /// assignment is written, so it never names a resource that cannot exist.
    pub fn check_names(&self) -> Result<(), ScopeError> {
        let segments: Vec<&str> = self.text.split('/').skip(1).collect();
        let bad = |what, name: &str, rule| ScopeError::InvalidName {
            scope: self.text.to_string(),
            what,
            name: name.to_owned(),
            rule,
        };
        let guid = |s: &str| {
            s.len() == 36
                && s.char_indices().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        };
        if let Some(sub) = segments.get(1)
            && !guid(sub)
        {
            return Err(bad("subscription", sub, "a subscription id is a GUID"));
        }
        if let Some(rg) = segments.get(3) {
            let ok = (1..=90).contains(&rg.chars().count())
                && rg
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_-.()".contains(c))
                && !rg.ends_with('.');
            if !ok {
                return Err(bad(
                    "resource group",
                    rg,
                    "1-90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'",
                ));
            }
        }
        if self.level == ScopeLevel::AuditLog {
            let name = segments.get(7).copied().unwrap_or_default();
            let ok = (1..=64).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(bad("audit log", name, "1-64 letters, digits, '-' or '_'"));
            }
            return Ok(());
        }
        if let Some(account) = segments.get(7)
            && !valid_account_name(account)
        {
            return Err(bad(
                "storage account",
                account,
                "3-24 lowercase letters and digits",
            ));
        }
        if let Some(container) = segments.get(11)
            && !valid_container_name(container)
        {
            return Err(bad(
                "container",
                container,
                "3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit",
            ));
        }
        Ok(())
    }

    fn from_parts(segments: Vec<String>, level: ScopeLevel) -> Self {
        let text = if segments.is_empty() {
            "/".to_owned()
        } else {
            format!("/{}", segments.join("/"))
        };
        let key = text.to_ascii_lowercase();
        Self {
            text: text.into(),
            key: key.into(),
            level,
        }
    }

    /// The scope of a storage account.
    pub fn storage_account(subscription: &str, resource_group: &str, account: &str) -> Self {
        Self::from_parts(
            vec![
                "subscriptions".into(),
                subscription.into(),
                "resourceGroups".into(),
                resource_group.into(),
                "providers".into(),
                "Microsoft.Storage".into(),
                "storageAccounts".into(),
                account.into(),
            ],
            ScopeLevel::StorageAccount,
        )
    }

    /// The scope of `database` on a PostgreSQL flexible server: what the SQL gate
    /// authorizes a connection at.
    pub fn postgres_database(
        subscription: &str,
        resource_group: &str,
        server: &str,
        database: &str,
    ) -> Self {
        Self::from_parts(
            vec![
                "subscriptions".into(),
                subscription.into(),
                "resourceGroups".into(),
                resource_group.into(),
                "providers".into(),
                "Microsoft.DBforPostgreSQL".into(),
                "flexibleServers".into(),
                server.into(),
                "databases".into(),
                database.into(),
            ],
            ScopeLevel::PostgresDatabase,
        )
    }

    /// The scope of the audit log `name` in a resource group: what the console
    /// authorizes reading the evidence at ([`crate::action::audit::READ`]).
    pub fn audit_log(subscription: &str, resource_group: &str, name: &str) -> Self {
        Self::from_parts(
            vec![
                "subscriptions".into(),
                subscription.into(),
                "resourceGroups".into(),
                resource_group.into(),
                "providers".into(),
                AUDIT_PROVIDER.into(),
                "auditLogs".into(),
                name.into(),
            ],
            ScopeLevel::AuditLog,
        )
    }

    /// The scope of `container` in this storage account (or blob service) scope;
    /// `None` for scopes above a storage account or already at a container.
    pub fn container(&self, container: &str) -> Option<Self> {
        let base = match self.level {
            ScopeLevel::StorageAccount => format!("{}/blobServices/default", self.text),
            ScopeLevel::BlobService => self.text.to_string(),
            _ => return None,
        };
        let text = format!("{base}/containers/{container}");
        Some(Self {
            key: text.to_ascii_lowercase().into(),
            text: text.into(),
            level: ScopeLevel::Container,
        })
    }

    /// The normalised scope string.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How deep the scope reaches.
    pub fn level(&self) -> ScopeLevel {
        self.level
    }

    /// The container name, for container scopes.
    pub fn container_name(&self) -> Option<&str> {
        (self.level == ScopeLevel::Container).then(|| self.last_segment())
    }

    /// The storage account name, for scopes at or below a storage account.
    pub fn account_name(&self) -> Option<&str> {
        matches!(
            self.level,
            ScopeLevel::StorageAccount | ScopeLevel::BlobService | ScopeLevel::Container
        )
        .then(|| self.text.split('/').nth(8))
        .flatten()
    }

    fn last_segment(&self) -> &str {
        self.text.rsplit('/').next().unwrap_or("")
    }

    /// True when `self` is `other` or an ancestor of it (case-insensitive, on
    /// segment boundaries).
    pub fn contains(&self, other: &Scope) -> bool {
        if self.level == ScopeLevel::Root {
            return true;
        }
        let (a, b) = (&*self.key, &*other.key);
        b.len() >= a.len()
            && b.starts_with(a)
            && (b.len() == a.len() || b.as_bytes()[a.len()] == b'/')
    }
}

impl PartialEq for Scope {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Scope {}

impl std::hash::Hash for Scope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", self.text)
    }
}

impl std::str::FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCT: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ml/providers/Microsoft.Storage/storageAccounts/data";

    #[test]
    fn parses_every_level_and_normalises_keywords() {
        let cases = [
            ("/", ScopeLevel::Root, "/"),
            (
                "/subscriptions/S",
                ScopeLevel::Subscription,
                "/subscriptions/S",
            ),
            (
                "/SUBSCRIPTIONS/S/resourcegroups/RG/",
                ScopeLevel::ResourceGroup,
                "/subscriptions/S/resourceGroups/RG",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/microsoft.storage/STORAGEACCOUNTS/a",
                ScopeLevel::StorageAccount,
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/blobservices/Default",
                ScopeLevel::BlobService,
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/blobServices/default",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/blobServices/default/containers/train",
                ScopeLevel::Container,
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/blobServices/default/containers/train",
            ),
        ];
        let pg = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg";
        let cases = cases.into_iter().chain([
            (
                "/subscriptions/s/resourceGroups/rg/providers/microsoft.dbforpostgresql/FLEXIBLESERVERS/pg",
                ScopeLevel::PostgresServer,
                pg,
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/Databases/Labels",
                ScopeLevel::PostgresDatabase,
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/databases/Labels",
            ),
        ]);
        for (input, level, text) in cases {
            let s = Scope::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(s.level(), level, "{input}");
            assert_eq!(s.as_str(), text, "{input}");
        }
    }

    #[test]
    fn names_that_azure_would_refuse_are_refused_before_an_assignment_is_written() {
        let sub = "00000000-0000-0000-0000-000000000001";
        let good = format!(
            "/subscriptions/{sub}/resourceGroups/ml_rg.(1)/providers/Microsoft.Storage/storageAccounts/data01/blobServices/default/containers/train-2"
        );
        Scope::parse(&good).unwrap().check_names().unwrap();
        let bad = [
            ("/subscriptions/abc".to_owned(), "subscription 'abc'"),
            (
                format!("/subscriptions/{sub}/resourceGroups/rg."),
                "resource group 'rg.'",
            ),
            (
                format!(
                    "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/Data"
                ),
                "storage account 'Data'",
            ),
            (
                format!(
                    "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/data/blobServices/default/containers/Bad_Name!"
                ),
                "container 'Bad_Name!'",
            ),
            (
                format!(
                    "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/data/blobServices/default/containers/a--b"
                ),
                "container 'a--b'",
            ),
        ];
        for (scope, expected) in bad {
            let err = Scope::parse(&scope)
                .unwrap()
                .check_names()
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{scope}: {err}");
        }
        assert!(valid_container_name("abc") && !valid_container_name("ab"));
    }

    #[test]
    fn rejects_malformed_scopes_with_the_offending_segment() {
        let bad = [
            ("subscriptions/s", "must start with '/'"),
            ("", "must start with '/'"),
            ("/subscription/s", "expected 'subscriptions' at segment 1"),
            ("/subscriptions", "subscription name is missing"),
            (
                "/subscriptions/s/resourceGroups/",
                "resource group name is missing",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v",
                "expected 'Microsoft.Storage', 'Microsoft.DBforPostgreSQL' or 'Entraflow.Audit' at segment 6",
            ),
            (
                &format!("{ACCT}/blobServices/other"),
                "expected 'default' at segment 10",
            ),
            (
                &format!("{ACCT}/blobServices/default/containers/c/blobs/x"),
                "goes below a blob container",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/databases/d/schemas/x",
                "goes below a blob container or database",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/storageAccounts/a",
                "expected 'flexibleServers' at segment 7",
            ),
            (
                "/subscriptions//resourceGroups/rg",
                "subscription name is missing",
            ),
        ];
        for (input, needle) in bad {
            let err = Scope::parse(input).expect_err(input).to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn containment_is_case_insensitive_and_on_segment_boundaries() {
        let acct = Scope::parse(ACCT).unwrap();
        let train = acct.container("train").unwrap();
        let secret = acct.container("train-secret").unwrap();
        assert!(Scope::root().contains(&train));
        assert!(acct.contains(&train));
        assert!(train.contains(&train));
        assert!(!train.contains(&secret));
        assert!(!train.contains(&acct));
        let upper = Scope::parse(&ACCT.to_uppercase()).unwrap();
        assert!(upper.contains(&train));
        assert_eq!(upper, acct);
        let other_rg =
            Scope::parse("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ml2")
                .unwrap();
        assert!(!other_rg.contains(&train));
        assert_eq!(train.container_name(), Some("train"));
        assert_eq!(train.account_name(), Some("data"));
        let db = Scope::postgres_database("s", "ml", "pg", "labels");
        assert_eq!(db, Scope::parse(db.as_str()).unwrap());
        let server = Scope::parse("/subscriptions/S/resourceGroups/ML/providers/Microsoft.DBforPostgreSQL/flexibleServers/PG").unwrap();
        assert!(server.contains(&db));
        assert!(!server.contains(&Scope::postgres_database("s", "ml", "pg2", "labels")));
        assert_eq!(db.account_name(), None);
        assert_eq!(db.container_name(), None);
    }

    #[test]
    fn the_audit_log_is_a_scope_below_its_resource_group() {
        let rg =
            Scope::parse("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ml")
                .unwrap();
        let log = Scope::parse(
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ml/providers/entraflow.audit/AUDITLOGS/default",
        )
        .unwrap();
        assert_eq!(log.level(), ScopeLevel::AuditLog);
        assert_eq!(
            log,
            Scope::audit_log("00000000-0000-0000-0000-000000000001", "ml", "default")
        );
        assert!(
            log.as_str()
                .ends_with("/providers/Entraflow.Audit/auditLogs/default")
        );
        assert!(rg.contains(&log) && !log.contains(&rg));
        log.check_names().unwrap();
        let bad = Scope::audit_log("00000000-0000-0000-0000-000000000001", "ml", "a b");
        assert!(bad.check_names().is_err());
        assert!(
            Scope::parse(&format!("{}/events", log.as_str())).is_err(),
            "nothing below the audit log is a scope"
        );
    }
}
