//! The hospital device: one request frame in, one reply frame out.
//!
//! It replies to each frame exactly as the host's in-process `Hospital`
//! does, with rows that never leave it:
//!
//! - StatsRequest: the feature statistics of its raw training rows;
//! - Standardize: keeps the federation's mean and scale, and replies with
//!   the statistics of its standardised training rows;
//! - Train: loads the global model (keeping or resetting Adam's moments as
//!   the settings select), trains the requested epochs and replies with an
//!   Update;
//! - Evaluate: replies with the model's Metrics on its test rows.
//!
//! The wire format has no error frame, so a request that cannot be
//! answered ends QEMU with a status from [`crate::exit`] and a message on
//! stderr.

use core::fmt;
use core::mem::MaybeUninit;

use fedcore::train::{self, ConfigError, Trainer};
use fedcore::wire::{self, DecodeError, EncodeError, Frame, Standardization};
use fedcore::Params;

use crate::exit;
use crate::link::Link;
use crate::measure;
use crate::rows::hospital::{HIDDEN1, HIDDEN2, INPUTS, NAME, TRAIN_ROWS};
use crate::rows::RawRows;
use crate::settings::Settings;

/// Size of the frame buffer: the longest frame of this model.
pub const FRAME_CAPACITY: usize = wire::frame_capacity::<INPUTS, HIDDEN1, HIDDEN2>();

/// A reason a request got no reply.
#[derive(Debug)]
pub enum Failure {
    /// The request frame was rejected.
    Rejected(DecodeError),
    /// The reply could not be encoded.
    Encode(EncodeError),
    /// The request is valid but cannot be served in the device's state.
    State(State),
}

/// A request that the device's state cannot serve.
#[derive(Debug, Clone, Copy)]
pub enum State {
    /// Train or Evaluate arrived before Standardize.
    NotStandardized,
    /// A standardised value is NaN or infinite.
    NonFinite {
        /// Zero-based row.
        row: usize,
        /// Zero-based input.
        column: usize,
    },
    /// A frame that only a server accepts.
    ServerFrame(wire::FrameKind),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(error) => write!(f, "request rejected: {error}"),
            Self::Encode(error) => write!(f, "reply could not be encoded: {error}"),
            Self::State(State::NotStandardized) => write!(
                f,
                "{NAME} has not received the federation's standardisation yet"
            ),
            Self::State(State::NonFinite { row, column }) => write!(
                f,
                "{NAME}: feature {column} of row {row} is NaN or infinite after standardisation"
            ),
            Self::State(State::ServerFrame(kind)) => write!(
                f,
                "{NAME} received a {kind} frame, which only a server accepts"
            ),
        }
    }
}

impl From<DecodeError> for Failure {
    fn from(error: DecodeError) -> Self {
        Self::Rejected(error)
    }
}

impl From<EncodeError> for Failure {
    fn from(error: EncodeError) -> Self {
        Self::Encode(error)
    }
}

impl Failure {
    /// Returns the exit status that this failure ends QEMU with.
    pub fn status(&self) -> i32 {
        match self {
            Self::Rejected(_) => exit::REJECTED,
            Self::Encode(_) | Self::State(_) => exit::STATE,
        }
    }
}

/// Ticks spent in the last Train and Evaluate requests' fedcore calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct Work {
    /// Ticks in `train_epoch`, summed over the request's epochs.
    pub train_ticks: u64,
    /// Samples trained in the last Train request.
    pub train_samples: u64,
    /// Ticks in `train::evaluate`.
    pub evaluate_ticks: u64,
    /// Samples evaluated in the last Evaluate request.
    pub evaluate_samples: u64,
}

/// One hospital's training state. About 74 KB for the default model, so
/// it lives in a static rather than on the stack.
pub struct Hospital {
    id: u32,
    trainer: Trainer<INPUTS, HIDDEN1, HIDDEN2>,
    standardization: Option<Standardization<INPUTS>>,
    /// Receives the parameters of a request, so that a bad frame cannot
    /// damage the trained state.
    scratch: Params<INPUTS, HIDDEN1, HIDDEN2>,
    order: [u32; TRAIN_ROWS],
    /// Measurements of the last requests.
    pub work: Work,
}

impl Hospital {
    /// Creates the hospital in `slot` with its settings.
    pub fn init(
        slot: &'static mut MaybeUninit<Hospital>,
        settings: &Settings,
    ) -> Result<&'static mut Hospital, ConfigError> {
        let trainer = Trainer::new(
            settings.train,
            Params::zeros(),
            settings.seed,
            settings.client,
        )?;
        Ok(slot.write(Hospital {
            id: settings.client,
            trainer,
            standardization: None,
            scratch: Params::zeros(),
            order: [0; TRAIN_ROWS],
            work: Work::default(),
        }))
    }

    /// Serves the request in `buffer[..len]` and writes the reply over it,
    /// then returns the reply's length.
    pub fn exchange(&mut self, buffer: &mut [u8], len: usize) -> Result<usize, Failure> {
        let frame = wire::decode(&buffer[..len], &mut self.scratch)?;
        let round = frame.header().round;
        let id = self.id;
        let reply_len = match frame {
            Frame::StatsRequest { .. } => {
                let stats = RawRows::train().feature_stats();
                wire::encode_feature_stats::<INPUTS, HIDDEN1, HIDDEN2>(buffer, id, &stats)?
            }
            Frame::Standardize {
                standardization, ..
            } => {
                let standardization = self.standardization.insert(standardization);
                let stats = RawRows::train()
                    .standardized(standardization)
                    .prepared_stats();
                wire::encode_feature_stats::<INPUTS, HIDDEN1, HIDDEN2>(buffer, id, &stats)?
            }
            Frame::Train { epochs, .. } => {
                self.trainer.load_global(&self.scratch);
                let rows = self.train(epochs)?;
                wire::encode_update(buffer, round, id, rows, self.trainer.params())?
            }
            Frame::Evaluate { .. } => {
                let standardization = self
                    .standardization
                    .as_ref()
                    .ok_or(Failure::State(State::NotStandardized))?;
                let test = RawRows::test().standardized(standardization);
                check_finite(&test)?;
                let start = measure::ticks();
                let metrics = train::evaluate(&self.scratch, &test);
                self.work.evaluate_ticks = measure::ticks() - start;
                self.work.evaluate_samples = u64::from(test_rows());
                wire::encode_metrics::<INPUTS, HIDDEN1, HIDDEN2>(buffer, round, id, &metrics)?
            }
            Frame::Update { header, .. }
            | Frame::Metrics { header, .. }
            | Frame::FeatureStats { header, .. }
            | Frame::Model { header, .. } => {
                return Err(Failure::State(State::ServerFrame(header.kind)));
            }
        };
        Ok(reply_len)
    }

    fn train(&mut self, epochs: u16) -> Result<u32, Failure> {
        let standardization = self
            .standardization
            .as_ref()
            .ok_or(Failure::State(State::NotStandardized))?;
        let rows = RawRows::train().standardized(standardization);
        check_finite(&rows)?;
        let start = measure::ticks();
        for _ in 0..epochs {
            // `order` has exactly TRAIN_ROWS entries, one per training row.
            if self.trainer.train_epoch(&rows, &mut self.order).is_err() {
                unreachable!("the order buffer has one entry per training row");
            }
        }
        self.work.train_ticks = measure::ticks() - start;
        self.work.train_samples = u64::from(epochs) * TRAIN_ROWS as u64;
        Ok(RawRows::train().len())
    }
}

/// Describes an invalid training setting without printing its value:
/// `ConfigError`'s own message formats floats, which costs about 26 KB of
/// flash.
pub fn describe_config_error(error: &ConfigError) -> &'static str {
    match error {
        ConfigError::ZeroBatchSize => "batch size 0 is invalid; use at least 1 row",
        ConfigError::InvalidDropout { .. } => {
            "dropout rate is invalid; use a value from 0 up to but not including 1"
        }
        ConfigError::InvalidLearningRate { .. } => {
            "learning rate is invalid; use a positive number such as 0.001"
        }
        _ => "a training setting is invalid",
    }
}

fn test_rows() -> u32 {
    RawRows::test().len()
}

fn check_finite(rows: &crate::rows::Standardized<'_>) -> Result<(), Failure> {
    match rows.first_non_finite() {
        Some((row, column)) => Err(Failure::State(State::NonFinite { row, column })),
        None => Ok(()),
    }
}

/// The device's memory: its hospital and the frame buffer.
static mut HOSPITAL: MaybeUninit<Hospital> = MaybeUninit::uninit();
static mut BUFFER: [u8; FRAME_CAPACITY] = [0; FRAME_CAPACITY];

/// Takes the device's static memory: the hospital slot and frame buffer.
///
/// # Panics
/// Panics on a second call, which would alias the statics.
pub fn take_memory() -> (
    &'static mut MaybeUninit<Hospital>,
    &'static mut [u8; FRAME_CAPACITY],
) {
    use core::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    // thumbv6m has no atomic swap, so the flag is read and set with
    // interrupts off.
    let already_taken = cortex_m::interrupt::free(|_| {
        let already_taken = TAKEN.load(Ordering::Relaxed);
        TAKEN.store(true, Ordering::Relaxed);
        already_taken
    });
    assert!(!already_taken, "the device memory is taken once");
    // SAFETY: the flag above lets only the first call through, so these are
    // the only references to the two statics.
    unsafe {
        (
            &mut *core::ptr::addr_of_mut!(HOSPITAL),
            &mut *core::ptr::addr_of_mut!(BUFFER),
        )
    }
}

/// Serves frames from stdin until it closes, then exits QEMU with status 0.
pub fn serve(settings: &Settings) -> ! {
    let (slot, buffer) = take_memory();
    let hospital = Hospital::init(slot, settings).unwrap_or_else(|error| {
        exit::fail(
            exit::SETTINGS,
            format_args!("{}", describe_config_error(&error)),
        )
    });
    let mut link =
        Link::open().unwrap_or_else(|error| exit::fail(exit::LINK, format_args!("{error}")));
    loop {
        let len = match link.read_frame(buffer) {
            Ok(Some(len)) => len,
            Ok(None) => break,
            Err(error) => exit::fail(exit::LINK, format_args!("{error}")),
        };
        let reply_len = hospital
            .exchange(buffer, len)
            .unwrap_or_else(|failure| exit::fail(failure.status(), format_args!("{failure}")));
        if let Err(error) = link.write_frame(&buffer[..reply_len]) {
            exit::fail(exit::LINK, format_args!("{error}"));
        }
    }
    exit::log(format_args!(
        "{NAME}: served {} frames; stack high-water {} bytes",
        link.frames_in,
        measure::stack_high_water()
    ));
    exit::exit(exit::SUCCESS)
}
