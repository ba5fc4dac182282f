//! Exact FedAvg of default-size updates: a round of three hospitals, and a
//! stream of 1000 updates whose throughput is reported in bytes of
//! parameters. `fedavg` adds the updates one at a time, and
//! `average_updates` averages the same updates held in memory in one pass.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fedcore::{average_updates, FedAvg};
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

/// Updates that one benchmark averages, with its id and their size in bytes.
type UpdateSet = (BenchmarkId, Throughput, Vec<(u32, Model)>);

/// Returns the two sets of updates that both groups average, 3 and 1000
/// default-size updates.
fn update_sets() -> Vec<UpdateSet> {
    [3usize, 1000]
        .into_iter()
        .map(|clients| {
            let bytes = clients * core::mem::size_of::<Model>();
            (
                BenchmarkId::from_parameter(format!("{clients}_clients")),
                Throughput::Bytes(bytes as u64),
                updates(clients, clients as u64),
            )
        })
        .collect()
}

fn fedavg(c: &mut Criterion) {
    let sets = update_sets();
    let mut aggregate = Box::new(FedAvg::<20, 64, 32>::new());
    let mut out = Model::zeros();

    let mut group = c.benchmark_group("fedavg");
    for (id, throughput, updates) in &sets {
        group.throughput(throughput.clone());
        group.bench_function(id.clone(), |b| {
            b.iter(|| average(&mut aggregate, black_box(updates), &mut out))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("average_updates");
    for (id, throughput, updates) in &sets {
        group.throughput(throughput.clone());
        group.bench_function(id.clone(), |b| {
            b.iter(|| {
                average_updates(black_box(updates), &mut out).expect("generated updates are valid")
            })
        });
    }
    group.finish();
    black_box(&out);
}

criterion_group!(benches, fedavg);
criterion_main!(benches);
