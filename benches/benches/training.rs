//! Training of the default 20 → 64 → 32 → 1 model: one sample's forward
//! and backward passes, one mini-batch step, one epoch and one Adam step.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fedcore::model::{self, Activations, Dropout};
use fedcore::rng::{self, Purpose};
use fedcore::train;
use fedcore::{Adam, AdamConfig, Dataset, TrainConfig, Trainer};
use fedcore_benches::{rows, trained_model, Model};

fn forward_backward(c: &mut Criterion) {
    let params = trained_model(1);
    let (features, labels) = rows(256, 2);
    let dropout = Dropout::new(0.3);
    let mut rng = rng::stream(3, Purpose::Dropout, 1);
    let mut activations = Activations::new();
    let mut grads = Model::zeros();
    let mut group = c.benchmark_group("forward_backward");
    group.throughput(Throughput::Elements(1));
    let mut row = 0;
    group.bench_function("1x20", |b| {
        b.iter(|| {
            row = (row + 1) % features.len();
            let input = &features[row];
            let logit =
                model::forward(&params, input, Some((&dropout, &mut rng)), &mut activations);
            let d_logit = (model::sigmoid(logit) - labels[row]) / 32.0;
            model::backward(&params, input, &activations, d_logit, &mut grads);
        })
    });
    group.finish();
    black_box(&grads);
}

fn trainer(seed: u64) -> Trainer<20, 64, 32> {
    Trainer::new(TrainConfig::default(), model::glorot_uniform(seed), seed, 1)
        .expect("the default configuration is valid")
}

/// Benchmarks one epoch over `count` rows, so that `32x20` is one mini-batch
/// and its Adam step.
fn epoch(c: &mut Criterion, group_name: &str, count: usize) {
    let (features, labels) = rows(count, 4);
    let data = Dataset::new(&features, &labels).expect("generated rows are valid");
    let mut trainer = trainer(5);
    let mut order = vec![0u32; count];
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function(format!("{count}x20"), |b| {
        b.iter(|| {
            trainer
                .train_epoch(&data, &mut order)
                .expect("the order buffer fits the rows")
        })
    });
    group.finish();
}

fn train_step(c: &mut Criterion) {
    epoch(c, "train_step", 32);
}

fn train_epoch(c: &mut Criterion) {
    epoch(c, "train_epoch", 800);
}

fn adam_step(c: &mut Criterion) {
    let config = AdamConfig::default();
    let mut params = trained_model(6);
    let grads = {
        let mut grads = trained_model(7);
        for value in grads.iter_mut() {
            *value *= 0.01;
        }
        grads
    };
    let mut adam = Adam::<20, 64, 32>::new();
    let mut group = c.benchmark_group("adam_step");
    group.throughput(Throughput::Elements(Model::COUNT as u64));
    group.bench_function(format!("{}", Model::COUNT), |b| {
        b.iter(|| adam.step(&config, &mut params, black_box(&grads)))
    });
    group.finish();
}

fn evaluate(c: &mut Criterion) {
    let params = trained_model(8);
    let (features, labels) = rows(200, 9);
    let data = Dataset::new(&features, &labels).expect("generated rows are valid");
    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(200));
    group.bench_function("200x20", |b| {
        b.iter(|| train::evaluate(black_box(&params), &data))
    });
    group.finish();
}

criterion_group!(
    benches,
    forward_backward,
    train_step,
    train_epoch,
    adam_step,
    evaluate
);
criterion_main!(benches);
