//! The physical floor of token issuance: bare RS256 signatures per second (RSA 2048,
//! aws-lc-rs, as the authority signs) on every core at once, over a token-sized
//! message. `benches/peers.sh` compares the authority's tokens/s against it.
//!
//!     cargo run --release -p entraflow-authority --example rs256_rate -- [SECONDS]
//!
//! Prints one JSON line: `{"threads": .., "seconds": .., "signatures_per_s": ..,
//! "signatures_per_cpu_s": ..}`; the second figure does not move when other work
//! shares the cores, so it is the one token issuance is held against.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SECONDS is a number"))
        .unwrap_or(3.0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let key = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA 2048 key");
    // About the size of a v2 access token's header and claims, base64url.
    let message = vec![b'e'; 1100];
    let stop = AtomicBool::new(false);
    let signed = AtomicU64::new(0);
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let rng = SystemRandom::new();
                let mut signature = vec![0; key.public_modulus_len()];
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    key.sign(&RSA_PKCS1_SHA256, &rng, &message, &mut signature)
                        .expect("RS256 signature");
                    n += 1;
                }
                signed.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let (elapsed, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu_start);
    let signed = signed.load(Ordering::Relaxed) as f64;
    println!(
        "{{\"threads\": {threads}, \"seconds\": {elapsed:.2}, \"signatures_per_s\": {:.0}, \"signatures_per_cpu_s\": {:.0}}}",
        signed / elapsed,
        signed / cpu
    );
}

/// This process's user + system CPU seconds, from `/proc/self/stat` (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on every Linux ABI Rust supports.
    ticks / 100.0
}
