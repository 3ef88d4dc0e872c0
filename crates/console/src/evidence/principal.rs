//! One principal: everything it did, the role assignments that apply to it now
//! (from the role store, the same one the gates decide with), and when its
//! access changed (the `admin.change` records that name it).

use std::collections::VecDeque;

use entraflow_audit::store::Cursor;
use entraflow_audit::{AnyStore, EventType, Filter, StoreBackend, Timestamp};
use entraflow_rbac::{AssignmentFilter, RbacStore, RoleAssignment};

use super::{Directory, Item, PAGE};
use crate::error::PageError;

/// Most of a principal's records shown (the latest); the rest are counted.
pub(crate) const MAX_SHOWN: usize = 500;

/// A role assignment, with its role's name.
#[derive(Debug, Clone)]
pub(crate) struct AssignmentView {
    pub(crate) assignment: RoleAssignment,
    pub(crate) role_name: String,
    pub(crate) in_effect: bool,
}

/// An admin change that names the principal.
#[derive(Debug, Clone)]
pub(crate) struct ChangeView {
    pub(crate) time: Timestamp,
    pub(crate) operation: String,
    pub(crate) actor: String,
    pub(crate) detail: String,
    pub(crate) log: String,
    pub(crate) seq: u64,
}

/// The principal page's content.
#[derive(Debug, Clone)]
pub(crate) struct PrincipalView {
    pub(crate) label: String,
    pub(crate) name: Option<String>,
    pub(crate) kind: Option<&'static str>,
    pub(crate) appid: Option<String>,
    pub(crate) assignments: Vec<AssignmentView>,
    pub(crate) changes: Vec<ChangeView>,
    /// The latest [`MAX_SHOWN`] records, oldest first.
    pub(crate) accesses: Vec<Item>,
    pub(crate) total: u64,
}

pub(crate) async fn load(
    store: &AnyStore,
    rbac: &RbacStore,
    directory: &Directory,
    label: &str,
) -> Result<PrincipalView, PageError> {
    let mut accesses: VecDeque<Item> = VecDeque::new();
    let mut total = 0u64;
    let mut appid = None;
    let mut recorded_name = None;
    let filter = Filter {
        principal: Some(label.to_owned()),
        ..Filter::default()
    };
    let mut cursor: Option<Cursor> = None;
    loop {
        let rows = store.query(&filter, cursor.as_ref(), PAGE).await?;
        let Some(last) = rows.last() else { break };
        cursor = Some(Cursor::after(last));
        for item in rows.iter().filter_map(|r| Item::parse(&r.record)) {
            total += 1;
            if let Some(p) = &item.record.event.principal {
                appid = appid.or(p.appid.clone());
                recorded_name = recorded_name.or(p.name.clone());
            }
            if accesses.len() == MAX_SHOWN {
                accesses.pop_front();
            }
            accesses.push_back(item);
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let definitions = rbac.definitions()?;
    let assignments = rbac
        .list_assignments(&AssignmentFilter {
            principal_id: Some(label.to_owned()),
            ..AssignmentFilter::default()
        })?
        .into_iter()
        .map(|a| AssignmentView {
            role_name: definitions
                .iter()
                .find(|d| d.id.eq_ignore_ascii_case(&a.role_definition_id))
                .map_or_else(|| a.role_definition_id.clone(), |d| d.name.clone()),
            in_effect: !a.is_expired(now),
            assignment: a,
        })
        .collect();
    let changes = super::query_all(
        store,
        &Filter {
            log_id: Some(entraflow_authority::ADMIN_LOG_ID.to_owned()),
            event_type: Some(EventType::AdminChange.as_str().to_owned()),
            ..Filter::default()
        },
    )
    .await?
    .into_iter()
    .filter(|i| {
        let e = &i.record.event;
        let needle = label.to_ascii_lowercase();
        e.detail
            .as_deref()
            .is_some_and(|d| d.to_ascii_lowercase().contains(&needle))
            || e.resource
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(label))
    })
    .map(|i| {
        let e = i.record.event;
        ChangeView {
            time: e.time,
            operation: e.action.unwrap_or_default(),
            actor: e
                .principal
                .map(|p| p.label().to_owned())
                .unwrap_or_default(),
            detail: e.detail.unwrap_or_default(),
            log: i.record.log,
            seq: i.record.seq,
        }
    })
    .collect();
    let kind = directory.lookup(label).map(|(_, k)| k);
    Ok(PrincipalView {
        name: directory.name_of(Some(label), recorded_name.as_deref()),
        label: label.to_owned(),
        kind,
        appid,
        assignments,
        changes,
        accesses: accesses.into(),
        total,
    })
}
