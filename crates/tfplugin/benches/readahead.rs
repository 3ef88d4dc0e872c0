//! Planner and glob costs per call: both run on every TensorFlow read or glob, so
//! they must stay negligible next to a network round trip.

use criterion::{Criterion, criterion_group, criterion_main};
use entraflow_tfplugin::glob;
use entraflow_tfplugin::readahead::Planner;
use std::hint::black_box;

fn planner(c: &mut Criterion) {
    c.bench_function("plan a 1 GiB sequential scan in 256 KiB reads", |b| {
        b.iter(|| {
            let mut p = Planner::new(1 << 30, 8 << 20, 4);
            let mut offset = 0;
            while offset < 1 << 30 {
                black_box(p.plan(offset, 256 << 10));
                offset += 256 << 10;
            }
        })
    });
}

fn globbing(c: &mut Criterion) {
    let names: Vec<String> = (0..10_000)
        .map(|i| format!("train/part-{:02}/shard-{i:05}.tfrecord", i % 16))
        .collect();
    c.bench_function("match a glob against 10,000 blob names", |b| {
        b.iter(|| {
            names
                .iter()
                .filter(|n| glob::matches(black_box("train/part-*/shard-0*.tfrecord"), n))
                .count()
        })
    });
}

criterion_group!(benches, planner, globbing);
criterion_main!(benches);
