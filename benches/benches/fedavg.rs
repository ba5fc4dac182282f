//! Exact FedAvg of default-size updates: a round of three hospitals, and a
//! stream of 1000 updates whose throughput is reported in bytes of
//! parameters.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fedcore::FedAvg;
use fedcore_benches::{updates, Model};

/// Resets the aggregate, adds every update and writes the mean: one round
/// of the server's work.
fn average(aggregate: &mut FedAvg<20, 64, 32>, updates: &[(u32, Model)], out: &mut Model) {
    let fingerprint = Model::fingerprint();
    aggregate.reset();
    for (rows, params) in updates {
        aggregate
            .add(fingerprint, *rows, params)
            .expect("generated updates are valid");
    }
    aggregate
        .finish(out)
        .expect("at least one update was added");
}

fn fedavg(c: &mut Criterion) {
    let mut group = c.benchmark_group("fedavg");
    let mut aggregate = Box::new(FedAvg::<20, 64, 32>::new());
    let mut out = Model::zeros();
    for clients in [3usize, 1000] {
        let updates = updates(clients, clients as u64);
        let bytes = clients * core::mem::size_of::<Model>();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(
            BenchmarkId::from_parameter(format!("{clients}_clients")),
            |b| b.iter(|| average(&mut aggregate, black_box(&updates), &mut out)),
        );
    }
    group.finish();
    black_box(&out);
}

criterion_group!(benches, fedavg);
criterion_main!(benches);
