//! Benchmarks of the gate's hot paths, against a real in-process authority and gate:
//! - `auth/verify_cached`: verifying a token already verified once (hash + map
//!   lookup + key-still-published check; no RSA);
//! - `ranged_get_1gib/*`: ranged Get Blob of a 1 GiB blob over HTTPS, through token
//!   check, RBAC decision and two durable audit appends per request.
//!
//! Run: `cargo bench -p entraflow-gate --bench gate`.

use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use entraflow_gate::{TokenVerifier, VerifierConfig};
use entraflow_testkit::{STORAGE_SCOPE, Stack, X_MS_VERSION};

const GIB: u64 = 1024 * 1024 * 1024;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (env, token) = rt.block_on(async {
        let env = Stack::start().await;
        let app = env.app("bench");
        env.assign(
            &app.oid,
            "Storage Blob Data Reader",
            &env.account_scope.clone(),
        );
        let owner = env.app("owner");
        env.assign(
            &owner.oid,
            "Storage Blob Data Owner",
            &env.account_scope.clone(),
        );
        env.wait_for_policy().await;
        let owner_token = env.token(&owner, STORAGE_SCOPE).await;
        env.create_container(&owner_token, "data").await;
        let token = env.token(&app, STORAGE_SCOPE).await;
        (env, token)
    });

    // Auth hot path.
    let verifier = {
        let config = VerifierConfig::new(
            env.authority.host().to_owned(),
            vec![env.authority.tenant().to_owned()],
            None,
        );
        TokenVerifier::new(config, env.authority.http.clone())
    };
    rt.block_on(verifier.verify(&token)).unwrap();
    c.bench_function("auth/verify_cached", |b| {
        b.iter(|| {
            rt.block_on(verifier.verify(std::hint::black_box(&token)))
                .unwrap()
        })
    });

    // A 1 GiB blob, written straight into the local backend's directory.
    let path = env.data_dir().join("blobs").join("data").join("big.bin");
    {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let chunk: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        for _ in 0..1024 {
            f.write_all(&chunk).unwrap();
        }
        f.flush().unwrap();
    }
    let url = format!("{}/data/big.bin", env.endpoint);
    let get = |range: Option<(u64, u64)>| {
        let mut req = env
            .authority
            .http
            .get(&url)
            .bearer_auth(&token)
            .header("x-ms-version", X_MS_VERSION);
        if let Some((start, len)) = range {
            req = req.header("x-ms-range", format!("bytes={start}-{}", start + len - 1));
        }
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            let mut n = 0u64;
            let mut stream = resp.bytes_stream();
            use futures::StreamExt;
            while let Some(chunk) = stream.next().await {
                n += chunk.unwrap().len() as u64;
            }
            n
        }
    };

    let mut group = c.benchmark_group("ranged_get_1gib");
    for size in [256 * 1024u64, 4 * 1024 * 1024, 32 * 1024 * 1024] {
        group.throughput(Throughput::Bytes(size));
        let mut offset = 0u64;
        group.bench_function(format!("{}KiB", size / 1024), |b| {
            b.iter(|| {
                // Walk the blob so reads are not served from one hot page range.
                offset = (offset + size * 7 + 4096) % (GIB - size);
                assert_eq!(rt.block_on(get(Some((offset, size)))), size);
            })
        });
    }
    // Four ranged readers at once (tf.data interleave), 4 MiB each.
    let size = 4 * 1024 * 1024u64;
    group.throughput(Throughput::Bytes(4 * size));
    let mut offset = 0u64;
    group.bench_function("4x4MiB_concurrent", |b| {
        b.iter(|| {
            offset = (offset + size * 13) % (GIB - 4 * size);
            let reads = (0..4).map(|i| get(Some((offset + i * size, size))));
            let total: u64 = rt
                .block_on(futures::future::join_all(reads))
                .into_iter()
                .sum();
            assert_eq!(total, 4 * size);
        })
    });
    group.sample_size(10);
    group.throughput(Throughput::Bytes(GIB));
    group.bench_function("full_1GiB", |b| {
        b.iter(|| assert_eq!(rt.block_on(get(None)), GIB))
    });
    group.finish();
    drop(env);
}

criterion_group!(gate, benches);
criterion_main!(gate);
