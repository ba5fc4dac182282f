//! The self-test that `cargo run` runs: the device serves a short session
//! of frames, as the host would send them, and measures its work.
//!
//! It checks that every reply decodes, that one epoch lowers the test
//! loss, and that the update names this hospital and its training rows.
//! It prints a hash of the trained parameters, for comparing builds for
//! different targets. Then it prints instructions per sample (only under
//! `-icount shift=0`, see [`crate::measure`]) and the stack's high-water
//! mark, and exits 0 when every check passed.

use core::fmt;

use fedcore::wire::{self, FeatureStats, Frame, Sink, Source, Standardization};
use fedcore::{model, Metrics, Params, Samples, TrainConfig};

use crate::exit;
use crate::hospital::{self, Hospital};
use crate::measure::{self, INSTRUCTIONS_PER_TICK};
use crate::rows::hospital::{
    DATA_SEED, FEATURES, HIDDEN1, HIDDEN2, HOSPITAL, INPUTS, NAME, ORIGIN, TEST_ROWS, TRAIN_ROWS,
};
use crate::rows::RawRows;
use crate::settings::Settings;

type Model = Params<INPUTS, HIDDEN1, HIDDEN2>;

/// Iterations of the calibration loop, two instructions each.
const CALIBRATION_ITERATIONS: u32 = 1_000_000;

/// Runs the self-test and exits QEMU.
pub fn run() -> ! {
    exit::log(format_args!(
        "{NAME}: {TRAIN_ROWS} training and {TEST_ROWS} test rows of {FEATURES} features ({ORIGIN})"
    ));
    let settings = Settings {
        seed: DATA_SEED,
        client: HOSPITAL,
        train: TrainConfig::default(),
    };
    let slot = hospital::take_memory();
    let device = Hospital::init(slot, &settings).unwrap_or_else(|error| {
        let message = hospital::describe_config_error(&error);
        exit::fail(exit::SELF_TEST, format_args!("{message}"))
    });
    let mut session = Session {
        device,
        buffer: [0; FRAME_CAPACITY],
        reply: [0; FRAME_CAPACITY],
        client: settings.client,
    };

    let stats = session.feature_stats();
    let standardization = local_standardization(&stats);
    session.standardize(&standardization);

    let initial: Model = model::glorot_uniform_padded(settings.seed, FEATURES);
    let before = session.evaluate(&initial);
    let mut update = Model::zeros();
    let rows = session.train(1, &initial, &mut update);
    let train_work = session.device.work;
    let after = session.evaluate(&update);
    let evaluate_work = session.device.work;

    check(
        rows as usize == TRAIN_ROWS,
        format_args!("update claims {rows} training rows, expected {TRAIN_ROWS}"),
    );
    let (loss_before, loss_after) = (mean_loss(&before), mean_loss(&after));
    exit::log(format_args!(
        "test loss {} before and {} after one epoch; test accuracy {} after",
        Fixed(loss_before),
        Fixed(loss_after),
        Fixed(after.accuracy().unwrap_or(0.0)),
    ));
    check(
        loss_after < loss_before,
        format_args!("one epoch did not lower the test loss"),
    );
    exit::log(format_args!(
        "parameters after one epoch: FNV-1a {:#010x}",
        fnv1a(&update)
    ));

    report_work(
        &standardization,
        train_work.train_ticks,
        evaluate_work.evaluate_ticks,
    );
    exit::log(format_args!(
        "stack high-water {} bytes",
        measure::stack_high_water()
    ));
    exit::log(format_args!("self-test passed"));
    exit::exit(exit::SUCCESS)
}

/// Buffer size that fits every frame of the model. The self-test's
/// buffers live on its stack, so they add nothing to the serving device's
/// static memory.
const FRAME_CAPACITY: usize = wire::frame_capacity::<INPUTS, HIDDEN1, HIDDEN2>();

/// The device with the server's frame buffers, driven as the host's server
/// drives it.
struct Session {
    device: &'static mut Hospital,
    buffer: [u8; FRAME_CAPACITY],
    reply: [u8; FRAME_CAPACITY],
    client: u32,
}

/// The self-test's only link failure: a reply longer than the reply
/// buffer, which `frame_capacity` sizes for the longest frame.
#[derive(Debug)]
struct Overflow;

/// A request frame, read by the device in pieces.
struct Request<'a>(&'a [u8]);

impl Source for Request<'_> {
    type Error = Overflow;

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Overflow> {
        let len = buf.len().min(self.0.len());
        buf[..len].copy_from_slice(&self.0[..len]);
        self.0 = &self.0[len..];
        Ok(len)
    }
}

/// The reply buffer, filled by the device in pieces.
struct Reply<'a> {
    buffer: &'a mut [u8],
    len: usize,
}

impl Sink for Reply<'_> {
    type Error = Overflow;

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let end = self.len + bytes.len();
        self.buffer
            .get_mut(self.len..end)
            .ok_or(Overflow)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

impl Session {
    /// Sends the frame in `buffer[..len]` and decodes the reply, writing
    /// any parameters into `params`.
    fn exchange(&mut self, len: usize, params: &mut Model) -> Frame<INPUTS> {
        let mut reply = Reply {
            buffer: &mut self.reply,
            len: 0,
        };
        match self
            .device
            .serve_one(&mut Request(&self.buffer[..len]), &mut reply)
        {
            Ok(true) => {}
            Ok(false) => exit::fail(exit::SELF_TEST, format_args!("the request was not read")),
            Err(failure) => exit::fail(exit::SELF_TEST, format_args!("{failure}")),
        }
        let reply_len = reply.len;
        let frame = wire::decode(&self.reply[..reply_len], params).unwrap_or_else(|error| {
            exit::fail(exit::SELF_TEST, format_args!("reply rejected: {error}"))
        });
        check(
            frame.header().client == self.client,
            format_args!("reply names client {}", frame.header().client),
        );
        frame
    }

    fn encoded(len: Result<usize, wire::EncodeError>) -> usize {
        len.unwrap_or_else(|error| exit::fail(exit::SELF_TEST, format_args!("{error}")))
    }

    fn feature_stats(&mut self) -> FeatureStats<INPUTS> {
        let len = Self::encoded(wire::encode_stats_request::<INPUTS, HIDDEN1, HIDDEN2>(
            &mut self.buffer[..],
            self.client,
        ));
        match self.exchange(len, &mut Model::zeros()) {
            Frame::FeatureStats { stats, .. } => stats,
            other => unexpected("feature-stats", &other),
        }
    }

    fn standardize(&mut self, standardization: &Standardization<INPUTS>) {
        let len = Self::encoded(wire::encode_standardize::<INPUTS, HIDDEN1, HIDDEN2>(
            &mut self.buffer[..],
            self.client,
            standardization,
        ));
        match self.exchange(len, &mut Model::zeros()) {
            Frame::FeatureStats { stats, .. } => check(
                stats.count[0] as usize == TRAIN_ROWS,
                format_args!("standardisation acknowledged {} rows", stats.count[0]),
            ),
            other => unexpected("feature-stats", &other),
        }
    }

    fn train(&mut self, epochs: u16, global: &Model, update: &mut Model) -> u32 {
        let len = Self::encoded(wire::encode_train(
            &mut self.buffer[..],
            1,
            self.client,
            epochs,
            global,
        ));
        match self.exchange(len, update) {
            Frame::Update { header, rows } if header.round == 1 => rows,
            other => unexpected("update for round 1", &other),
        }
    }

    fn evaluate(&mut self, params: &Model) -> Metrics {
        let len = Self::encoded(wire::encode_evaluate(
            &mut self.buffer[..],
            1,
            self.client,
            params,
        ));
        match self.exchange(len, &mut Model::zeros()) {
            Frame::Metrics { metrics, .. } => metrics,
            other => unexpected("metrics", &other),
        }
    }
}

/// Derives mean and scale from this hospital's statistics alone, as if it
/// were the only hospital of the federation. A feature without any value
/// here gets mean 0 and scale 1, like padding, where the server would
/// reject it.
fn local_standardization(stats: &FeatureStats<INPUTS>) -> Standardization<INPUTS> {
    let mut stats = *stats;
    for column in 0..FEATURES {
        if stats.count[column] == 0 {
            stats.count[column] = 1;
        }
    }
    stats
        .standardization(FEATURES)
        .unwrap_or_else(|error| exit::fail(exit::SELF_TEST, format_args!("{error}")))
}

/// Prints the instructions per sample of training, evaluation and
/// standardisation, when a calibration loop shows that QEMU counts
/// instructions (`-icount shift=0`).
fn report_work(standardization: &Standardization<INPUTS>, train_ticks: u64, evaluate_ticks: u64) {
    let instructions = 2 * u64::from(CALIBRATION_ITERATIONS);
    let expected_ticks = instructions / INSTRUCTIONS_PER_TICK;
    let calibration_ticks = measure::calibrate(CALIBRATION_ITERATIONS);
    // Reading the counter around the loop adds a few instructions, less
    // than one tick.
    if calibration_ticks.abs_diff(expected_ticks) > 1 {
        exit::log(format_args!(
            "instruction counts skipped: a loop of {instructions} instructions took \
             {calibration_ticks} SysTick ticks, not {expected_ticks}; run QEMU with \
             -icount shift=0 to count instructions"
        ));
        return;
    }

    let rows = RawRows::train().standardized(standardization);
    let mut features = [0.0f32; INPUTS];
    let start = measure::ticks();
    for row in 0..TRAIN_ROWS {
        core::hint::black_box(rows.sample(row, &mut features));
        core::hint::black_box(&features);
    }
    let standardize_ticks = measure::ticks() - start;

    let per_sample = |ticks: u64, samples: usize| -> u64 {
        ticks * INSTRUCTIONS_PER_TICK / (samples.max(1) as u64)
    };
    exit::log(format_args!(
        "instructions per sample (SysTick ticks x {INSTRUCTIONS_PER_TICK}, calibrated): \
         training {} (one epoch of {TRAIN_ROWS} rows, Adam and shuffle included), \
         evaluation {}, standardising a row {}",
        per_sample(train_ticks, TRAIN_ROWS),
        per_sample(evaluate_ticks, TEST_ROWS),
        per_sample(standardize_ticks, TRAIN_ROWS),
    ));
}

/// Returns the 32-bit FNV-1a hash of the parameters' little-endian bytes,
/// so that builds for different targets can be compared bit for bit.
fn fnv1a(params: &Model) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let mut hash = OFFSET_BASIS;
    for value in params.iter() {
        for byte in value.to_bits().to_le_bytes() {
            hash = (hash ^ u32::from(byte)).wrapping_mul(PRIME);
        }
    }
    hash
}

fn mean_loss(metrics: &Metrics) -> f64 {
    metrics.mean_loss().unwrap_or(f64::INFINITY)
}

fn check(condition: bool, message: fmt::Arguments<'_>) {
    if !condition {
        exit::fail(exit::SELF_TEST, format_args!("self-test failed: {message}"));
    }
}

fn unexpected(expected: &str, frame: &Frame<INPUTS>) -> ! {
    exit::fail(
        exit::SELF_TEST,
        format_args!(
            "self-test failed: {} frame where a {expected} frame was expected",
            frame.header().kind
        ),
    )
}

/// A non-negative number shown with four decimals without float
/// formatting, which would add about 26 KB of flash.
struct Fixed(f64);

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !(self.0.is_finite() && self.0 >= 0.0) {
            return f.write_str("n/a");
        }
        let scaled = (self.0 * 10_000.0 + 0.5) as u64;
        write!(f, "{}.{:04}", scaled / 10_000, scaled % 10_000)
    }
}
