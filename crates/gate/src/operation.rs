//! Blob REST operations: which one a request is (method, `restype`, `comp`, target),
//! the Azure action it needs, and what it counts as in the audit log.

use axum::http::{HeaderMap, Method};
use entraflow_rbac::action;

use crate::error::StorageError;
use crate::names::Target;

/// The operations the gate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GET /<account>?comp=list`.
    ListContainers,
    /// `PUT ?restype=container`.
    CreateContainer,
    /// `DELETE ?restype=container`.
    DeleteContainer,
    /// `GET|HEAD ?restype=container`.
    GetContainerProperties,
    /// `PUT ?restype=container&comp=metadata`.
    SetContainerMetadata,
    /// `GET ?restype=container&comp=list`.
    ListBlobs,
    /// `GET` a blob.
    GetBlob,
    /// `HEAD` a blob.
    GetBlobProperties,
    /// `PUT` a blob.
    PutBlob,
    /// `PUT ?comp=block&blockid=..`.
    PutBlock,
    /// `PUT ?comp=blocklist`.
    PutBlockList,
    /// `PUT ?comp=metadata` on a blob.
    SetBlobMetadata,
    /// `PUT` with `x-ms-copy-source`.
    CopyBlob,
    /// `DELETE` a blob.
    DeleteBlob,
    /// `POST ?comp=batch`: Delete Blob sub-requests, each authorized on its own.
    BlobBatch,
    /// `PUT ?comp=properties` on a blob: its HTTP headers.
    SetBlobProperties,
    /// `GET ?comp=blocklist`.
    GetBlockList,
    /// `PUT ?comp=copy&copyid=..`.
    AbortCopyBlob,
    /// `GET|HEAD ?restype=account&comp=properties` on the account, a container or a blob.
    GetAccountInformation,
    /// `PUT ?comp=lease` on a blob.
    LeaseBlob,
    /// `PUT ?restype=container&comp=lease`.
    LeaseContainer,
    /// `GET ?comp=tags` on a blob.
    GetBlobTags,
    /// `PUT ?comp=tags` on a blob.
    SetBlobTags,
    /// `GET /<account>?comp=blobs&where=..` or `?restype=container&comp=blobs&where=..`.
    FindBlobsByTags,
}

/// A request's query parameters, looked up by name (Azure's are case-sensitive lowercase).
#[derive(Debug, Default, Clone)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string.
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Query(
            raw.map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
                .unwrap_or_default(),
        )
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Operation {
    /// Every operation, in declaration order (`ALL[op as usize] == op`).
    pub const ALL: [Operation; 24] = [
        Operation::ListContainers,
        Operation::CreateContainer,
        Operation::DeleteContainer,
        Operation::GetContainerProperties,
        Operation::SetContainerMetadata,
        Operation::ListBlobs,
        Operation::GetBlob,
        Operation::GetBlobProperties,
        Operation::PutBlob,
        Operation::PutBlock,
        Operation::PutBlockList,
        Operation::SetBlobMetadata,
        Operation::CopyBlob,
        Operation::DeleteBlob,
        Operation::BlobBatch,
        Operation::SetBlobProperties,
        Operation::GetBlockList,
        Operation::AbortCopyBlob,
        Operation::GetAccountInformation,
        Operation::LeaseBlob,
        Operation::LeaseContainer,
        Operation::GetBlobTags,
        Operation::SetBlobTags,
        Operation::FindBlobsByTags,
    ];

    /// Its name in Azure's REST reference (`GetBlob`, `PutBlockList`): the
    /// `operation` label of the gate's request metrics.
    pub fn name(self) -> &'static str {
        match self {
            Operation::ListContainers => "ListContainers",
            Operation::CreateContainer => "CreateContainer",
            Operation::DeleteContainer => "DeleteContainer",
            Operation::GetContainerProperties => "GetContainerProperties",
            Operation::SetContainerMetadata => "SetContainerMetadata",
            Operation::ListBlobs => "ListBlobs",
            Operation::GetBlob => "GetBlob",
            Operation::GetBlobProperties => "GetBlobProperties",
            Operation::PutBlob => "PutBlob",
            Operation::PutBlock => "PutBlock",
            Operation::PutBlockList => "PutBlockList",
            Operation::SetBlobMetadata => "SetBlobMetadata",
            Operation::CopyBlob => "CopyBlob",
            Operation::DeleteBlob => "DeleteBlob",
            Operation::BlobBatch => "BlobBatch",
            Operation::SetBlobProperties => "SetBlobProperties",
            Operation::GetBlockList => "GetBlockList",
            Operation::AbortCopyBlob => "AbortCopyBlob",
            Operation::GetAccountInformation => "GetAccountInformation",
            Operation::LeaseBlob => "LeaseBlob",
            Operation::LeaseContainer => "LeaseContainer",
            Operation::GetBlobTags => "GetBlobTags",
            Operation::SetBlobTags => "SetBlobTags",
            Operation::FindBlobsByTags => "FindBlobsByTags",
        }
    }

    /// Classifies a request.
    pub(crate) fn classify(
        method: &Method,
        target: &Target,
        query: &Query,
        headers: &HeaderMap,
    ) -> Result<Self, StorageError> {
        let restype = query.get("restype");
        let comp = query.get("comp");
        if restype == Some("account") && comp == Some("properties") {
            return match *method {
                Method::GET | Method::HEAD => Ok(Operation::GetAccountInformation),
                _ => Err(StorageError::unsupported_verb()),
            };
        }
        let op = match (target, restype, comp) {
            (Target::Service | Target::Container(_), _, Some("batch"))
                if method == Method::POST =>
            {
                Operation::BlobBatch
            }
            (Target::Service, _, Some("list")) if method == Method::GET => {
                Operation::ListContainers
            }
            (Target::Service, _, Some("blobs")) if method == Method::GET => {
                Operation::FindBlobsByTags
            }
            (Target::Service, _, _) => {
                return Err(StorageError::unsupported(
                    "this service operation (only comp=list)",
                ));
            }
            (Target::Container(_), Some("container"), None) => match *method {
                Method::PUT => Operation::CreateContainer,
                Method::DELETE => Operation::DeleteContainer,
                Method::GET | Method::HEAD => Operation::GetContainerProperties,
                _ => return Err(StorageError::unsupported_verb()),
            },
            (Target::Container(_), Some("container"), Some("metadata"))
                if method == Method::PUT =>
            {
                Operation::SetContainerMetadata
            }
            (Target::Container(_), Some("container"), Some("metadata"))
                if matches!(*method, Method::GET | Method::HEAD) =>
            {
                Operation::GetContainerProperties
            }
            (Target::Container(_), Some("container"), Some("list")) if method == Method::GET => {
                Operation::ListBlobs
            }
            (Target::Container(_), Some("container"), Some("lease")) if method == Method::PUT => {
                Operation::LeaseContainer
            }
            (Target::Container(_), Some("container"), Some("blobs")) if method == Method::GET => {
                Operation::FindBlobsByTags
            }
            (Target::Container(_), _, _) => {
                return Err(StorageError::unsupported("this container operation"));
            }
            (Target::Blob(..), _, None) => match *method {
                Method::GET => Operation::GetBlob,
                Method::HEAD => Operation::GetBlobProperties,
                Method::DELETE => Operation::DeleteBlob,
                Method::PUT if headers.contains_key("x-ms-copy-source") => Operation::CopyBlob,
                Method::PUT => Operation::PutBlob,
                _ => return Err(StorageError::unsupported_verb()),
            },
            (Target::Blob(..), _, Some("block")) if method == Method::PUT => Operation::PutBlock,
            (Target::Blob(..), _, Some("blocklist")) if method == Method::PUT => {
                Operation::PutBlockList
            }
            (Target::Blob(..), _, Some("metadata")) if method == Method::PUT => {
                Operation::SetBlobMetadata
            }
            (Target::Blob(..), _, Some("properties")) if method == Method::PUT => {
                Operation::SetBlobProperties
            }
            (Target::Blob(..), _, Some("blocklist")) if method == Method::GET => {
                Operation::GetBlockList
            }
            (Target::Blob(..), _, Some("copy")) if method == Method::PUT => {
                Operation::AbortCopyBlob
            }
            (Target::Blob(..), _, Some("lease")) if method == Method::PUT => Operation::LeaseBlob,
            (Target::Blob(..), _, Some("tags")) => match *method {
                Method::GET => Operation::GetBlobTags,
                Method::PUT => Operation::SetBlobTags,
                _ => return Err(StorageError::unsupported_verb()),
            },
            (Target::Blob(..), _, Some(other)) => {
                return Err(StorageError::unsupported(&format!("comp={other} on blobs")));
            }
        };
        Ok(op)
    }

    /// The Azure action the operation needs, and whether it is a data action.
    pub fn action(self) -> (&'static str, entraflow_rbac::ActionKind) {
        use entraflow_rbac::ActionKind::{Control, Data};
        match self {
            Operation::ListContainers | Operation::GetContainerProperties => {
                (action::container::READ, Control)
            }
            Operation::CreateContainer
            | Operation::SetContainerMetadata
            | Operation::LeaseContainer => (action::container::WRITE, Control),
            Operation::DeleteContainer => (action::container::DELETE, Control),
            // Azure documents Get Account Information for Shared Key and SAS only; the
            // gate answers it (SKU and kind, nothing more) to bearer callers who may
            // read at the target's scope, since azure-storage-blob calls it.
            Operation::ListBlobs
            | Operation::GetBlob
            | Operation::GetBlobProperties
            | Operation::GetBlockList
            | Operation::GetAccountInformation => (action::blob::READ, Data),
            Operation::PutBlob
            | Operation::PutBlock
            | Operation::PutBlockList
            | Operation::CopyBlob
            | Operation::SetBlobMetadata
            | Operation::SetBlobProperties
            | Operation::AbortCopyBlob
            | Operation::LeaseBlob => (action::blob::WRITE, Data),
            Operation::DeleteBlob | Operation::BlobBatch => (action::blob::DELETE, Data),
            Operation::GetBlobTags => (action::blob::TAGS_READ, Data),
            Operation::SetBlobTags => (action::blob::TAGS_WRITE, Data),
            Operation::FindBlobsByTags => (action::blob::FILTER, Data),
        }
    }

    /// The sub-operation ABAC conditions see (`Blob.List` for List Blobs).
    pub fn sub_operation(self) -> Option<&'static str> {
        (self == Operation::ListBlobs).then_some(action::blob::SUB_OPERATION_LIST)
    }

    /// Whether it changes anything (a blob, a container, a lease, tags): its
    /// decision is then made durable before the change.
    pub fn mutates(self) -> bool {
        self.event_type().is_data_write()
    }

    /// What the audit log calls it when allowed.
    pub fn event_type(self) -> entraflow_audit::EventType {
        use entraflow_audit::EventType as E;
        match self {
            Operation::ListContainers | Operation::GetContainerProperties => E::ContainerList,
            Operation::CreateContainer
            | Operation::SetContainerMetadata
            | Operation::LeaseContainer => E::ContainerCreate,
            Operation::DeleteContainer => E::ContainerDelete,
            Operation::ListBlobs => E::BlobList,
            Operation::GetBlob | Operation::GetBlobProperties | Operation::GetBlockList => {
                E::BlobRead
            }
            Operation::GetAccountInformation => E::Other("account.read".into()),
            Operation::PutBlob
            | Operation::PutBlock
            | Operation::PutBlockList
            | Operation::CopyBlob
            | Operation::SetBlobMetadata
            | Operation::SetBlobProperties
            | Operation::AbortCopyBlob
            | Operation::LeaseBlob => E::BlobWrite,
            Operation::DeleteBlob | Operation::BlobBatch => E::BlobDelete,
            Operation::GetBlobTags => E::BlobRead,
            Operation::SetBlobTags => E::BlobWrite,
            Operation::FindBlobsByTags => E::BlobList,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_operation_at_its_index_under_its_debug_name() {
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
            assert_eq!(op.name(), format!("{op:?}"));
        }
    }

    fn classify(
        method: Method,
        target: Target,
        query: &str,
        copy: bool,
    ) -> Result<Operation, StorageError> {
        let mut headers = HeaderMap::new();
        if copy {
            headers.insert("x-ms-copy-source", "https://h/a/c/b".parse().unwrap());
        }
        Operation::classify(&method, &target, &Query::parse(Some(query)), &headers)
    }

    #[test]
    fn operations_map_to_azure_actions() {
        let c = || Target::Container("data".into());
        let b = || Target::Blob("data".into(), "x".into());
        let cases = [
            (
                classify(Method::GET, Target::Service, "comp=list", false),
                Operation::ListContainers,
            ),
            (
                classify(Method::PUT, c(), "restype=container", false),
                Operation::CreateContainer,
            ),
            (
                classify(
                    Method::GET,
                    c(),
                    "restype=container&comp=list&prefix=a",
                    false,
                ),
                Operation::ListBlobs,
            ),
            (classify(Method::GET, b(), "", false), Operation::GetBlob),
            (
                classify(Method::HEAD, b(), "", false),
                Operation::GetBlobProperties,
            ),
            (
                classify(Method::PUT, b(), "comp=block&blockid=AA%3D%3D", false),
                Operation::PutBlock,
            ),
            (
                classify(Method::PUT, b(), "comp=blocklist", false),
                Operation::PutBlockList,
            ),
            (classify(Method::PUT, b(), "", true), Operation::CopyBlob),
            (
                classify(Method::DELETE, b(), "", false),
                Operation::DeleteBlob,
            ),
            (
                classify(Method::POST, c(), "restype=container&comp=batch", false),
                Operation::BlobBatch,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got.unwrap(), want);
        }
        assert_eq!(
            Operation::GetBlob.action().0,
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
        );
        assert_eq!(Operation::ListBlobs.sub_operation(), Some("Blob.List"));
        assert_eq!(
            Operation::PutBlockList.action().0,
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"
        );
        assert_eq!(
            Operation::DeleteContainer.action().1,
            entraflow_rbac::ActionKind::Control
        );
        assert!(classify(Method::POST, b(), "", false).is_err());
        assert_eq!(
            classify(Method::GET, b(), "comp=tags", false).unwrap(),
            Operation::GetBlobTags
        );
        assert!(classify(Method::DELETE, b(), "comp=tags", false).is_err());
    }
}
