//! Action strings and the wildcard patterns of role definitions.
//!
//! Azure compares operations case-insensitively and lets `*` stand for any run of
//! characters, `/` included, anywhere in the pattern: `*`, `*/read`,
//! `Microsoft.Storage/*/read`, `.../containers/blobs/*`.

/// Data actions of Azure Blob Storage, as the gate maps requests onto them.
pub mod blob {
    /// Get Blob, Get Blob Properties, List Blobs (sub-operation `Blob.List`).
    pub const READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
    /// Put Blob, Put Block, Put Block List, Copy Blob (destination).
    pub const WRITE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write";
    /// Delete Blob.
    pub const DELETE: &str =
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete";
    /// Append Block and other add-only writes.
    pub const ADD: &str =
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action";
    /// Rename (hierarchical namespace).
    pub const MOVE: &str =
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action";
    /// Get Blob Tags.
    pub const TAGS_READ: &str =
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/read";
    /// Set Blob Tags.
    pub const TAGS_WRITE: &str =
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write";
    /// Find Blobs by Tags.
    pub const FILTER: &str =
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/filter/action";
    /// Sub-operation of [`READ`] for List Blobs.
    pub const SUB_OPERATION_LIST: &str = "Blob.List";
    /// Sub-operation of [`WRITE`] for writes that set tags (`x-ms-tags`).
    pub const SUB_OPERATION_WITH_TAG_HEADERS: &str = "Blob.Write.WithTagHeaders";
}

/// Control-plane actions (role definitions' `Actions`) the gate checks.
pub mod container {
    /// List Containers, Get Container Properties.
    pub const READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/read";
    /// Create Container.
    pub const WRITE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/write";
    /// Delete Container.
    pub const DELETE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/delete";
}

/// Creating or changing a role assignment (what the admin API requires).
pub const ROLE_ASSIGNMENTS_WRITE: &str = "Microsoft.Authorization/roleAssignments/write";
/// Deleting a role assignment.
pub const ROLE_ASSIGNMENTS_DELETE: &str = "Microsoft.Authorization/roleAssignments/delete";
/// Reading role assignments (listing them, getting one).
pub const ROLE_ASSIGNMENTS_READ: &str = "Microsoft.Authorization/roleAssignments/read";
/// Reading role definitions.
pub const ROLE_DEFINITIONS_READ: &str = "Microsoft.Authorization/roleDefinitions/read";
/// Creating or changing a custom role definition.
pub const ROLE_DEFINITIONS_WRITE: &str = "Microsoft.Authorization/roleDefinitions/write";

/// The SQL gate's action (entraflow's own: Azure's flexible servers check only
/// the role mapping).
pub mod postgres {
    /// Open a session on a database through the SQL gate.
    pub const CONNECT: &str = "Microsoft.DBforPostgreSQL/flexibleServers/databases/connect/action";
}

/// Reading the audit log (entraflow's own action; the console checks it). A data
/// action, as reading blobs is: the evidence is data, so `Owner`'s `Actions: *`
/// does not grant it, and neither does any Storage role; only a role that lists
/// it (the console's custom role "Audit Log Reader") or `DataActions: *` does.
pub mod audit {
    /// See the console's runs, principals, timeline and chain integrity pages.
    pub const READ: &str = "Entraflow.Audit/auditLogs/events/read";
}

/// Every data action entraflow checks (the gates, the console): what a custom
/// role's `DataActions` and `NotDataActions` may name.
pub const DATA_ACTIONS: &[&str] = &[
    blob::READ,
    blob::WRITE,
    blob::DELETE,
    blob::ADD,
    blob::MOVE,
    blob::TAGS_READ,
    blob::TAGS_WRITE,
    blob::FILTER,
    postgres::CONNECT,
    audit::READ,
];

/// The control-plane actions of the blob service the gate checks, plus the
/// authorization actions its admin API checks.
pub const CONTROL_ACTIONS: &[&str] = &[
    container::READ,
    container::WRITE,
    container::DELETE,
    ROLE_ASSIGNMENTS_WRITE,
    ROLE_ASSIGNMENTS_DELETE,
    ROLE_ASSIGNMENTS_READ,
    ROLE_DEFINITIONS_READ,
    ROLE_DEFINITIONS_WRITE,
    "Microsoft.Authorization/roleDefinitions/delete",
];

/// Control actions under these prefixes are checked against [`CONTROL_ACTIONS`];
/// other providers' actions (Azure has thousands) are kept as given.
const CHECKED_CONTROL_PREFIXES: &[&str] = &[
    "microsoft.storage/storageaccounts/blobservices/",
    "microsoft.authorization/",
];

/// Why an action of a custom role is refused: it names no operation the gate
/// knows, so it would grant (or remove) nothing, silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAction {
    /// The action as written.
    pub action: String,
    /// The closest known action.
    pub suggestion: Option<&'static str>,
}

/// Checks a `DataActions`/`NotDataActions` (`data == true`) or
/// `Actions`/`NotActions` entry: a pattern must match at least one known action.
pub fn check_action(pattern: &str, data: bool) -> Result<(), UnknownAction> {
    let compiled = ActionPattern::new(pattern);
    let lower = pattern.trim().to_ascii_lowercase();
    let catalog = if data { DATA_ACTIONS } else { CONTROL_ACTIONS };
    if !data
        && !CHECKED_CONTROL_PREFIXES
            .iter()
            .any(|p| lower.starts_with(p))
        && !lower.contains('*')
    {
        return Ok(());
    }
    if !data
        && lower.contains('*')
        && !catalog
            .iter()
            .any(|a| compiled.matches_lower(&a.to_ascii_lowercase()))
    {
        // A wildcard over other providers (e.g. `*/read`, `Microsoft.Compute/*`).
        return if CHECKED_CONTROL_PREFIXES
            .iter()
            .any(|p| lower.starts_with(p))
        {
            Err(unknown(pattern, catalog))
        } else {
            Ok(())
        };
    }
    if catalog
        .iter()
        .any(|a| compiled.matches_lower(&a.to_ascii_lowercase()))
    {
        Ok(())
    } else {
        Err(unknown(pattern, catalog))
    }
}

fn unknown(pattern: &str, catalog: &[&'static str]) -> UnknownAction {
    let lower = pattern.trim().to_ascii_lowercase();
    let suggestion = catalog
        .iter()
        .copied()
        .min_by_key(|a| edit_distance(&lower, &a.to_ascii_lowercase()));
    UnknownAction {
        action: pattern.trim().to_owned(),
        suggestion,
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A compiled action pattern: lower-cased, split at `*`.
#[derive(Debug, Clone)]
pub(crate) struct ActionPattern {
    source: String,
    parts: Vec<String>,
}

impl ActionPattern {
    pub(crate) fn new(pattern: &str) -> Self {
        let lower = pattern.trim().to_ascii_lowercase();
        Self {
            source: pattern.trim().to_owned(),
            parts: lower.split('*').map(str::to_owned).collect(),
        }
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn has_wildcard(&self) -> bool {
        self.parts.len() > 1
    }

    /// Matches an action that is already lower-cased.
    pub(crate) fn matches_lower(&self, action: &str) -> bool {
        glob_parts(&self.parts, action)
    }
}

/// Matches `text` against literal `parts` separated by `*` (the first part anchors
/// the start, the last the end). Greedy left-to-right search is exact for `*`-only
/// globs: each literal is taken at its earliest position.
fn glob_parts(parts: &[String], text: &str) -> bool {
    let (first, rest) = match parts.split_first() {
        Some(x) => x,
        None => return text.is_empty(),
    };
    if rest.is_empty() {
        return text == first;
    }
    let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    let (last, middle) = rest.split_last().expect("rest is not empty");
    for part in middle {
        match remaining.find(part.as_str()) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last.as_str())
}

/// Whether `pattern` matches `action` as Azure matches role permissions.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    ActionPattern::new(pattern).matches_lower(&action.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_actions_are_refused_with_the_closest_known_one() {
        let typo = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/raed";
        let err = check_action(typo, true).unwrap_err();
        assert_eq!(err.suggestion, Some(blob::READ));
        for ok in ["*", "*/read", blob::WRITE, "Microsoft.Storage/*/blobs/*"] {
            check_action(ok, true).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
        assert!(check_action("Microsoft.Compute/*", true).is_err());
        // Other providers' control actions are Azure's to judge; ours are checked.
        check_action("Microsoft.Compute/virtualMachines/read", false).unwrap();
        check_action("*/read", false).unwrap();
        check_action("Microsoft.Authorization/*", false).unwrap();
        let err = check_action("Microsoft.Authorization/roleAssignment/write", false).unwrap_err();
        assert_eq!(err.suggestion, Some(ROLE_ASSIGNMENTS_WRITE));
    }

    #[test]
    fn wildcards_match_as_azure_does() {
        let table = [
            ("*", blob::READ, true),
            ("*/read", blob::READ, true),
            ("*/read", blob::WRITE, false),
            ("Microsoft.Storage/*/read", container::READ, true),
            ("microsoft.storage/*", blob::DELETE, true),
            (
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*",
                blob::MOVE,
                true,
            ),
            (
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*",
                container::READ,
                false,
            ),
            (
                "Microsoft.Storage/storageAccounts/blobServices/containers/*",
                blob::READ,
                true,
            ),
            (
                "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/CONTAINERS/BLOBS/READ",
                blob::READ,
                true,
            ),
            (blob::READ, blob::WRITE, false),
            (blob::READ, &format!("{}x", blob::READ), false),
            ("Microsoft.Storage/*/blobs/*/action", blob::ADD, true),
            ("Microsoft.Storage/*/blobs/*/action", blob::READ, false),
            ("Microsoft.Authorization/*", ROLE_ASSIGNMENTS_WRITE, true),
            (
                "Microsoft.Authorization/*/read",
                ROLE_ASSIGNMENTS_WRITE,
                false,
            ),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("**", "", true),
        ];
        for (pattern, action, expected) in table {
            assert_eq!(
                action_matches(pattern, action),
                expected,
                "{pattern} vs {action}"
            );
        }
    }
}
