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
use fedcore::wire::{
    self, DecodeError, EncodeError, Frame, ReadError, Sink, Source, Standardization, WriteError,
};
use fedcore::Params;

use crate::exit;
use crate::link;
use crate::measure;
use crate::rows::hospital::{HIDDEN1, HIDDEN2, INPUTS, NAME, TRAIN_ROWS};
use crate::rows::RawRows;
use crate::settings::Settings;

/// Size of the frame buffer: the longest frame without parameters.
/// Parameters stream between the link and the trainer in pieces.
pub const BUFFER_LEN: usize = wire::stream_buffer_len::<INPUTS, HIDDEN1, HIDDEN2>();

// The shuffle order contains u16 row indices. Flash has no room for more
// rows, because 65,536 rows of one f64 feature take 512 KiB.
const _: () = assert!(TRAIN_ROWS <= 1 << 16);

/// A reason a request got no reply. `E` is the link's I/O error.
#[derive(Debug)]
pub enum Failure<E> {
    /// Reading or writing a frame failed.
    Link(E),
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

impl<E: fmt::Debug> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Link(error) => write!(f, "semihosting I/O failed: {error:?}"),
            Self::Rejected(DecodeError::Truncated { needed, available }) => write!(
                f,
                "stdin ended inside a frame: {available} of its {needed} bytes arrived"
            ),
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

impl<E> From<ReadError<E>> for Failure<E> {
    fn from(error: ReadError<E>) -> Self {
        match error {
            ReadError::Io(error) => Self::Link(error),
            ReadError::Decode(error) => Self::Rejected(error),
            // BUFFER_LEN is the length that read_frame requires.
            ReadError::BufferTooSmall { .. } => {
                unreachable!("the frame buffer has wire::stream_buffer_len bytes")
            }
        }
    }
}

impl<E> From<WriteError<E>> for Failure<E> {
    fn from(error: WriteError<E>) -> Self {
        match error {
            WriteError::Io(error) => Self::Link(error),
            WriteError::Encode(error) => Self::Encode(error),
        }
    }
}

impl<E> From<EncodeError> for Failure<E> {
    fn from(error: EncodeError) -> Self {
        Self::Encode(error)
    }
}

impl<E> Failure<E> {
    /// Returns the exit status that this failure ends QEMU with.
    pub fn status(&self) -> i32 {
        match self {
            Self::Link(_) | Self::Rejected(DecodeError::Truncated { .. }) => exit::LINK,
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

/// One hospital's training state and frame buffer: 58,416 bytes for the
/// default model and hospital, so it lives in a static rather than on the
/// stack.
pub struct Hospital {
    id: u32,
    /// Requests decode straight into its parameters: a site's parameters
    /// always come from the last Train or Evaluate request, so a request
    /// that fails half-way loses nothing that the server does not resend.
    trainer: Trainer<INPUTS, HIDDEN1, HIDDEN2>,
    standardization: Option<Standardization<INPUTS>>,
    order: [u16; TRAIN_ROWS],
    buffer: [u8; BUFFER_LEN],
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
            order: [0; TRAIN_ROWS],
            buffer: [0; BUFFER_LEN],
            work: Work::default(),
        }))
    }

    /// Reads one request from `source` and writes the reply to `sink`.
    /// Returns `false` when the source ends before a request starts.
    pub fn serve_one<E, S, W>(&mut self, source: &mut S, sink: &mut W) -> Result<bool, Failure<E>>
    where
        S: Source<Error = E>,
        W: Sink<Error = E>,
    {
        let Some(frame) = self.receive(source)? else {
            return Ok(false);
        };
        let round = frame.header().round;
        match frame {
            Frame::StatsRequest { .. } => self.reply_stats(sink)?,
            Frame::Standardize {
                standardization, ..
            } => {
                self.standardization = Some(standardization);
                self.reply_stats(sink)?;
            }
            Frame::Train { epochs, .. } => self.reply_train(round, epochs, sink)?,
            Frame::Evaluate { .. } => self.reply_evaluate(round, sink)?,
            Frame::Update { header, .. }
            | Frame::Metrics { header, .. }
            | Frame::FeatureStats { header, .. }
            | Frame::Model { header, .. } => {
                return Err(Failure::State(State::ServerFrame(header.kind)));
            }
        }
        Ok(true)
    }

    // Each step below is a function of its own that is never inlined, so
    // the stack contains the locals of one step at a time. Inlined into one
    // frame, they took about 900 bytes more.

    /// Reads a request, writing any parameters into the trainer's.
    #[inline(never)]
    fn receive<E, S: Source<Error = E>>(
        &mut self,
        source: &mut S,
    ) -> Result<Option<Frame<INPUTS>>, Failure<E>> {
        Ok(wire::read_frame(
            source,
            &mut self.buffer,
            self.trainer.params_mut(),
        )?)
    }

    /// Replies with the statistics of the raw training rows, or of the
    /// standardised ones once a standardisation has arrived.
    #[inline(never)]
    fn reply_stats<E, W: Sink<Error = E>>(&mut self, sink: &mut W) -> Result<(), Failure<E>> {
        let stats = match &self.standardization {
            None => RawRows::train().feature_stats(),
            Some(standardization) => RawRows::train()
                .standardized(standardization)
                .prepared_stats(),
        };
        let len = wire::encode_feature_stats::<INPUTS, HIDDEN1, HIDDEN2>(
            &mut self.buffer,
            self.id,
            &stats,
        );
        self.send(len, sink)
    }

    /// Trains on the global model that the request wrote into the trainer
    /// and replies with the update.
    #[inline(never)]
    fn reply_train<E, W: Sink<Error = E>>(
        &mut self,
        round: u32,
        epochs: u16,
        sink: &mut W,
    ) -> Result<(), Failure<E>> {
        self.trainer.start_round();
        let rows = self.train(epochs)?;
        wire::write_update(sink, round, self.id, rows, self.trainer.params())?;
        Ok(())
    }

    /// Evaluates the model that the request wrote into the trainer and
    /// replies with the metrics.
    #[inline(never)]
    fn reply_evaluate<E, W: Sink<Error = E>>(
        &mut self,
        round: u32,
        sink: &mut W,
    ) -> Result<(), Failure<E>> {
        let standardization = self
            .standardization
            .as_ref()
            .ok_or(Failure::State(State::NotStandardized))?;
        let test = RawRows::test().standardized(standardization);
        check_finite(&test)?;
        let start = measure::ticks();
        let metrics = train::evaluate(self.trainer.params(), &test);
        self.work.evaluate_ticks = measure::ticks() - start;
        self.work.evaluate_samples = u64::from(test_rows());
        let len = wire::encode_metrics::<INPUTS, HIDDEN1, HIDDEN2>(
            &mut self.buffer,
            round,
            self.id,
            &metrics,
        );
        self.send(len, sink)
    }

    /// Sends the reply that an `encode_*` call wrote into the buffer.
    fn send<E, W: Sink<Error = E>>(
        &self,
        encoded: Result<usize, EncodeError>,
        sink: &mut W,
    ) -> Result<(), Failure<E>> {
        let len = encoded?;
        sink.write_all(&self.buffer[..len]).map_err(Failure::Link)
    }

    fn train<E>(&mut self, epochs: u16) -> Result<u32, Failure<E>> {
        let standardization = self
            .standardization
            .as_ref()
            .ok_or(Failure::State(State::NotStandardized))?;
        let rows = RawRows::train().standardized(standardization);
        check_finite(&rows)?;
        let start = measure::ticks();
        for _ in 0..epochs {
            // `order` has exactly TRAIN_ROWS entries, one per training row,
            // and TRAIN_ROWS fits u16 indices.
            if self.trainer.train_epoch(&rows, &mut self.order).is_err() {
                unreachable!("the order buffer has one u16 entry per training row");
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

fn check_finite<E>(rows: &crate::rows::Standardized<'_>) -> Result<(), Failure<E>> {
    match rows.first_non_finite() {
        Some((row, column)) => Err(Failure::State(State::NonFinite { row, column })),
        None => Ok(()),
    }
}

/// The device's memory: its hospital.
static mut HOSPITAL: MaybeUninit<Hospital> = MaybeUninit::uninit();

/// Takes the device's static memory: the hospital slot.
///
/// # Panics
/// Panics on a second call, which would alias the static.
pub fn take_memory() -> &'static mut MaybeUninit<Hospital> {
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
    // SAFETY: the flag above lets only the first call through, so this is
    // the only reference to the static.
    unsafe { &mut *core::ptr::addr_of_mut!(HOSPITAL) }
}

/// Serves frames from stdin until it closes, then exits QEMU with status 0.
pub fn serve(settings: &Settings) -> ! {
    let slot = take_memory();
    let hospital = Hospital::init(slot, settings).unwrap_or_else(|error| {
        exit::fail(
            exit::SETTINGS,
            format_args!("{}", describe_config_error(&error)),
        )
    });
    let (mut input, mut output) = link::open().unwrap_or_else(|error| {
        exit::fail(
            exit::LINK,
            format_args!("failed to open semihosting stdin and stdout: {error:?}"),
        )
    });
    let mut frames_in = 0u32;
    loop {
        match hospital.serve_one(&mut input, &mut output) {
            Ok(true) => frames_in += 1,
            Ok(false) => break,
            Err(failure) => exit::fail(failure.status(), format_args!("{failure}")),
        }
    }
    let statics = measure::static_ram();
    let stack = measure::stack_high_water();
    exit::log(format_args!(
        "{NAME}: served {frames_in} frames; static RAM {statics} bytes; stack high-water {stack} bytes; RAM in use {} bytes",
        statics + stack
    ));
    exit::exit(exit::SUCCESS)
}
