//! The default `compare` job end to end, through the host library: data
//! generation for the three built-in hospitals, then federated, isolated,
//! centralized and client-dropout training with every evaluation, on the
//! default number of threads and on one.

use std::num::NonZeroUsize;

use criterion::{criterion_group, criterion_main, Criterion};
use fedcore_host::compare::{self, CompareConfig};
use fedcore_host::data;

fn compare_default(c: &mut Criterion) {
    let config = CompareConfig::default();
    let mut group = c.benchmark_group("compare");
    // One run takes tens of milliseconds; ten samples keep the whole
    // benchmark under a few seconds.
    group.sample_size(10);
    group.bench_function("default", |b| {
        b.iter(|| {
            let source = data::builtin_hospitals(0, 0.2);
            compare::run(&source, &config, &mut |_| {}).expect("the default compare runs")
        })
    });
    // The same job with its phases one after another, as `--threads 1`
    // runs it.
    group.bench_function("one_thread", |b| {
        b.iter(|| {
            let source = data::builtin_hospitals(0, 0.2);
            compare::run_with_threads(&source, &config, NonZeroUsize::MIN, &mut |_| {})
                .expect("the default compare runs on one thread")
        })
    });
    group.finish();
}

criterion_group!(benches, compare_default);
criterion_main!(benches);
