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
