//! One authorization decision with 10,000 assignments in the store, spread over
//! 1,000 principals (10 container-scoped assignments each, every fifth with the
//! `train/` condition), through `Authorizer::authorize` with the default
//! refresh interval, so the periodic change check is included.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use entraflow_rbac::{Authorizer, NewAssignment, Principal, Request, Scope, action};
use time::OffsetDateTime;

const PRINCIPALS: usize = 1_000;
const PER_PRINCIPAL: usize = 10;
const TRAIN_ONLY: &str = "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'} AND NOT SubOperationMatches{'Blob.List'})) OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike 'train/*'))";

fn principal(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-000000000000")
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let account = Scope::storage_account("00000000-0000-0000-0000-000000000001", "ml", "data");
    let authz = Authorizer::open(dir.path()).unwrap();
    for p in 0..PRINCIPALS {
        for k in 0..PER_PRINCIPAL {
            let scope = account.container(&format!("c{p}-{k}")).unwrap();
            let role = if k % 2 == 0 {
                "Storage Blob Data Reader"
            } else {
                "Storage Blob Data Contributor"
            };
            let mut new = NewAssignment::new(principal(p), role, scope.as_str());
            if k % 5 == 4 {
                new.condition = Some(TRAIN_ONLY.into());
            }
            authz.store().create_assignment(new, now).unwrap();
        }
    }
    authz.refresh().unwrap();
    assert_eq!(
        authz.store().assignments().unwrap().len(),
        PRINCIPALS * PER_PRINCIPAL
    );

    let who = Principal::new(principal(500)).with_app_id("bench-app");
    // The principal's last assignment matches, so all ten are looked at.
    let allow = Request::data(action::blob::READ, account.container("c500-8").unwrap())
        .with_blob("train/shard-0001.tfrecord");
    let allow_condition = Request::data(action::blob::READ, account.container("c500-9").unwrap())
        .with_blob("train/shard-0001.tfrecord");
    let deny = Request::data(action::blob::READ, account.container("c501-0").unwrap())
        .with_blob("train/shard-0001.tfrecord");
    let with_groups = Principal::new(principal(500))
        .with_groups((0..20).map(|g| format!("{g:08x}-1111-4000-8000-000000000000")));
    assert!(authz.authorize(&who, &allow, now).is_allowed());
    assert!(authz.authorize(&who, &allow_condition, now).is_allowed());
    assert!(!authz.authorize(&who, &deny, now).is_allowed());

    let mut g = c.benchmark_group("authorize_10k_assignments");
    g.bench_function("allow", |b| {
        b.iter(|| authz.authorize(black_box(&who), black_box(&allow), now))
    });
    g.bench_function("allow_with_condition", |b| {
        b.iter(|| authz.authorize(black_box(&who), black_box(&allow_condition), now))
    });
    // Worst case for a group-heavy token: every group is looked up, none grants.
    g.bench_function("deny_with_20_groups", |b| {
        b.iter(|| authz.authorize(black_box(&with_groups), black_box(&deny), now))
    });
    g.bench_function("deny", |b| {
        b.iter(|| authz.authorize(black_box(&who), black_box(&deny), now))
    });
    g.finish();

    // What a reload costs after the CLI changes something: read all 10,000 rows and
    // rebuild the index (other threads keep deciding with the old index meanwhile).
    let mut g = c.benchmark_group("reload_10k_assignments");
    g.sample_size(10);
    g.bench_function("refresh_after_change", |b| {
        b.iter_batched(
            || {
                let scope = account.container("churn").unwrap();
                let new = NewAssignment::new(
                    principal(PRINCIPALS),
                    "Storage Blob Data Reader",
                    scope.as_str(),
                );
                let a = authz.store().create_assignment(new, now).unwrap();
                authz.store().delete_assignment(&a.name).unwrap();
            },
            |()| assert!(authz.refresh().unwrap()),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
