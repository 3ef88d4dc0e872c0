//! The decision engine: an in-memory index of assignments keyed by principal,
//! kept in step with the store.
//!
//! A decision looks at the caller's own assignments and those of its groups, and
//! nothing else, so its cost does not grow with the number of assignments in the
//! store. The index is rebuilt when the store's generation changes; the generation
//! is read at most once per refresh interval, on the request path, by one thread
//! while the others keep using the current index, or by a background thread
//! ([`Authorizer::spawn_refresher`]) so that no request ever pays for a reload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::action::ROLE_ASSIGNMENTS_WRITE;
use crate::condition::Condition;
use crate::decision::{Decision, Denial, DenialReason, Principal, Request, RoleSuggestion};
use crate::definition::{CompiledRole, RoleType};
use crate::error::Error;
use crate::scope::Scope;
use crate::store::{RbacStore, Snapshot};

/// How often, at most, a decision checks the store for changes by default.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct Entry {
    assignment_id: Arc<str>,
    principal_id: Arc<str>,
    role: Arc<CompiledRole>,
    role_name: Arc<str>,
    scope: Scope,
    condition: Option<Condition>,
    expires_at: Option<OffsetDateTime>,
}

/// An immutable, compiled view of one store generation.
#[derive(Debug)]
pub(crate) struct Index {
    generation: i64,
    by_principal: HashMap<String, Vec<Entry>>,
    /// Every role, in suggestion order.
    roles: Vec<Arc<CompiledRole>>,
}

impl Index {
    pub(crate) fn build(snapshot: Snapshot) -> Self {
        let roles: Vec<Arc<CompiledRole>> = snapshot
            .definitions
            .into_iter()
            .map(|d| Arc::new(CompiledRole::new(d)))
            .collect();
        let by_id: HashMap<String, Arc<CompiledRole>> = roles
            .iter()
            .map(|r| (r.definition.id.to_ascii_lowercase(), Arc::clone(r)))
            .collect();
        let mut by_principal: HashMap<String, Vec<Entry>> = HashMap::new();
        for a in snapshot.assignments {
            let Some(role) = by_id.get(&a.role_definition_id.to_ascii_lowercase()) else {
                tracing::warn!(assignment = %a.name, role = %a.role_definition_id,
                    "role assignment names an unknown role; it grants nothing");
                continue;
            };
            if !role.definition.assignable_at(&a.scope) {
                // Azure's rule: a role edited so that an assignment's scope is no longer
                // among its assignable scopes stops granting there.
                tracing::warn!(assignment = %a.name, role = %role.definition.name, scope = %a.scope,
                    "role assignment is outside its role's assignable scopes; it grants nothing");
                continue;
            }
            let condition = match a.condition.as_deref().map(Condition::parse).transpose() {
                Ok(c) => c,
                Err(e) => {
                    // Stored conditions were validated on create; a bad one was edited in
                    // by hand. Dropping the assignment fails closed.
                    tracing::warn!(assignment = %a.name, error = %e,
                        "role assignment has an invalid condition; it grants nothing");
                    continue;
                }
            };
            let key = a.principal_id.to_ascii_lowercase();
            by_principal.entry(key.clone()).or_default().push(Entry {
                assignment_id: a.id().into(),
                principal_id: key.into(),
                role_name: role.definition.name.as_str().into(),
                role: Arc::clone(role),
                scope: a.scope,
                condition,
                expires_at: a.expires_at,
            });
        }
        Self {
            generation: snapshot.generation,
            by_principal,
            roles,
        }
    }

    pub(crate) fn authorize(
        &self,
        principal: &Principal,
        request: &Request,
        now: OffsetDateTime,
    ) -> Decision {
        let action = request.action_lower();
        let attributes = request.attributes(&action);
        let mut expired = Vec::new();
        let mut condition_false = Vec::new();
        let ids = std::iter::once(&principal.object_id).chain(principal.group_ids.iter());
        for id in ids {
            let Some(entries) = self.lookup(id) else {
                continue;
            };
            for e in entries {
                if !e.scope.contains(&request.scope) || !e.role.grants(request.kind, &action) {
                    continue;
                }
                if e.expires_at.is_some_and(|t| t <= now) {
                    expired.push(e.assignment_id.to_string());
                    continue;
                }
                if let Some(c) = &e.condition
                    && !c.eval(&attributes)
                {
                    condition_false.push(e.assignment_id.to_string());
                    continue;
                }
                return Decision::Allow {
                    assignment_id: Arc::clone(&e.assignment_id),
                    role_name: Arc::clone(&e.role_name),
                    scope: e.scope.clone(),
                    granted_to: Arc::clone(&e.principal_id),
                };
            }
        }
        let reason = if !condition_false.is_empty() {
            DenialReason::ConditionNotMet {
                assignment_ids: condition_false,
            }
        } else if !expired.is_empty() {
            DenialReason::Expired {
                assignment_ids: expired,
            }
        } else {
            DenialReason::NoAssignment
        };
        Decision::Deny(Denial {
            principal_id: principal.object_id.clone(),
            app_id: principal.app_id.clone(),
            action: request.action.clone(),
            kind: request.kind,
            scope: request.scope.clone(),
            reason,
            suggestions: self.suggest(request, &action),
        })
    }

    fn lookup(&self, id: &str) -> Option<&Vec<Entry>> {
        // Object ids are stored lower-case; avoid allocating when the caller's are too.
        if id.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_principal.get(&id.to_ascii_lowercase())
        } else {
            self.by_principal.get(id)
        }
    }

    /// Roles that grant the action and may be assigned at the scope: built-ins in
    /// their least-privileged-first order, then custom roles.
    fn suggest(&self, request: &Request, action_lower: &str) -> Vec<RoleSuggestion> {
        let builtins = self
            .roles
            .iter()
            .filter(|r| r.definition.role_type == RoleType::BuiltIn);
        let customs = self
            .roles
            .iter()
            .filter(|r| r.definition.role_type == RoleType::Custom);
        builtins
            .chain(customs)
            .filter(|r| {
                r.grants(request.kind, action_lower) && r.definition.assignable_at(&request.scope)
            })
            .map(|r| RoleSuggestion {
                id: r.definition.id.clone(),
                name: r.definition.name.clone(),
            })
            .collect()
    }
}

/// Authorizes requests against the role store, picking up changes made by other
/// processes (the CLI) without a restart. Share it behind an `Arc`.
#[derive(Debug)]
pub struct Authorizer {
    store: RbacStore,
    index: RwLock<Arc<Index>>,
    refresh_every_ms: u64,
    epoch: Instant,
    last_check_ms: AtomicU64,
    /// False once a background refresher does the checking.
    on_request: AtomicBool,
}

impl Authorizer {
    /// Opens `<data_dir>/rbac.db` and loads it.
    pub fn open(data_dir: &std::path::Path) -> Result<Self, Error> {
        Self::new(RbacStore::open(data_dir)?)
    }

    /// Loads an open store.
    pub fn new(store: RbacStore) -> Result<Self, Error> {
        let index = Index::build(store.snapshot()?);
        Ok(Self {
            store,
            index: RwLock::new(Arc::new(index)),
            refresh_every_ms: DEFAULT_REFRESH_INTERVAL.as_millis() as u64,
            epoch: Instant::now(),
            last_check_ms: AtomicU64::new(0),
            on_request: AtomicBool::new(true),
        })
    }

    /// Sets how often, at most, decisions check the store for changes
    /// ([`DEFAULT_REFRESH_INTERVAL`] by default; zero checks on every decision).
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_every_ms = interval.as_millis() as u64;
        self
    }

    /// The store, for admin mutations. Call [`Authorizer::refresh`] after one so the
    /// next decision sees it immediately.
    pub fn store(&self) -> &RbacStore {
        &self.store
    }

    /// The store generation ([`RbacStore::generation`]) that decisions are made with:
    /// once it has reached the store's, every change stored before is in effect.
    pub fn generation(&self) -> i64 {
        self.current().generation
    }

    /// Reloads the index if the store changed; returns whether it did.
    pub fn refresh(&self) -> Result<bool, Error> {
        let current = self.current().generation;
        if self.store.generation()? == current {
            return Ok(false);
        }
        let index = Index::build(self.store.snapshot()?);
        tracing::debug!(generation = index.generation, "role assignments reloaded");
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(index);
        Ok(true)
    }

    /// Moves reloads off the request path: a background thread checks the store
    /// every `interval` and swaps in a rebuilt index, and decisions stop checking.
    /// The thread ends when the last `Arc` to the authorizer is dropped.
    pub fn spawn_refresher(self: &Arc<Self>, interval: Duration) -> std::thread::JoinHandle<()> {
        // Decisions no longer check; the thread does.
        self.on_request.store(false, Ordering::Relaxed);
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("rbac-refresh".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(authorizer) = weak.upgrade() else {
                        return;
                    };
                    if let Err(e) = authorizer.refresh() {
                        tracing::warn!(error = %e, "cannot check the role store for changes; deciding with the assignments loaded earlier");
                    }
                }
            })
            .expect("spawning a thread")
    }

    fn current(&self) -> Arc<Index> {
        Arc::clone(&self.index.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn maybe_refresh(&self) {
        if !self.on_request.load(Ordering::Relaxed) {
            return;
        }
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_check_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < self.refresh_every_ms {
            return;
        }
        // One thread checks; the others go on with the index they have.
        if self
            .last_check_ms
            .compare_exchange(last, now_ms.max(1), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, "cannot check the role store for changes; deciding with the assignments loaded earlier");
        }
    }

    /// Decides whether `principal` may perform `request` at `now`. Deny by default;
    /// a denial explains itself (see [`Denial`]).
    pub fn authorize(
        &self,
        principal: &Principal,
        request: &Request,
        now: OffsetDateTime,
    ) -> Decision {
        self.maybe_refresh();
        let decision = self.current().authorize(principal, request, now);
        if let Decision::Deny(d) = &decision {
            tracing::debug!(principal = %d.principal_id, action = %d.action, scope = %d.scope, "denied");
        }
        decision
    }

    /// Decides whether `principal` may create or change role assignments at `scope`
    /// (`Microsoft.Authorization/roleAssignments/write`, granted by the built-in
    /// Owner and User Access Administrator roles or a custom role).
    pub fn can_manage(
        &self,
        principal: &Principal,
        scope: &Scope,
        now: OffsetDateTime,
    ) -> Decision {
        self.authorize(
            principal,
            &Request::control(ROLE_ASSIGNMENTS_WRITE, scope.clone()),
            now,
        )
    }
}
