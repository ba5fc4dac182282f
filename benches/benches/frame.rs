//! Wire frames: encoding one default-size update and decoding it again,
//! with every check the server runs on arrival.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fedcore::wire::{self, Frame};
use fedcore_benches::{trained_model, Model};

fn frame(c: &mut Criterion) {
    let params = trained_model(11);
    let mut buffer = vec![0u8; wire::frame_capacity::<20, 64, 32>()];
    let mut decoded = Model::zeros();
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Bytes(core::mem::size_of::<Model>() as u64));
    group.bench_function("encode_decode_update", |b| {
        b.iter(|| {
            let length = wire::encode_update(&mut buffer, 3, 2, 800, black_box(&params))
                .expect("the buffer fits an update");
            match wire::decode(&buffer[..length], &mut decoded) {
                Ok(Frame::Update { rows, .. }) => rows,
                other => panic!("expected an update frame, got {other:?}"),
            }
        })
    });
    group.finish();
    assert_eq!(decoded, params);
}

criterion_group!(benches, frame);
criterion_main!(benches);
