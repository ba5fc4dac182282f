//! The wire format: postcard frames with a length prefix and a CRC-32.
//!
//! A frame is `len ‖ body ‖ crc`:
//!
//! - `len`: the body's length in bytes as a postcard varint (LEB128 `u32`);
//! - `body`: a postcard-encoded [`Header`] followed by the kind's payload;
//! - `crc`: CRC-32 (ISO-HDLC, the zlib and Ethernet polynomial) of `len ‖
//!   body`, four bytes little-endian.
//!
//! | kind | payload |
//! |---|---|
//! | [`FrameKind::Train`] | local epochs (`u16`), then the parameters |
//! | [`FrameKind::Evaluate`] | the parameters |
//! | [`FrameKind::Update`] | training rows (`u32`), then the parameters |
//! | [`FrameKind::Metrics`] | a [`Metrics`] record |
//! | [`FrameKind::StatsRequest`] | nothing |
//! | [`FrameKind::FeatureStats`] | [`FeatureStats`]: count, mean and sum of squared deviations per feature |
//! | [`FrameKind::Standardize`] | [`Standardization`]: mean and scale per feature |
//! | [`FrameKind::Model`] | feature count (`u16`), the standardisation, then the parameters |
//!
//! Parameters are `COUNT` little-endian `f32` in the wire order of
//! [`Layers::tensors`](crate::Layers::tensors). Decoding checks, in order,
//! the length, the CRC, the version, the model fingerprint, the kind, the
//! payload's length and the finiteness of every float, and returns a typed
//! [`DecodeError`] on the first failure. Past a successful decode the
//! fixed-size math cannot fail. No input makes encoding or decoding panic.
//!
//! [`read_frame`], [`write_train`], [`write_evaluate`] and [`write_update`]
//! move frames through a [`Source`] or [`Sink`] in pieces, with a buffer of
//! [`stream_buffer_len`] bytes instead of a whole frame, for devices with
//! little RAM. They produce and accept the same bytes as the buffered
//! functions.

use core::fmt;

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Deserializer, Serialize};

use crate::params::{Fingerprint, Params};
pub use crate::stats::{FeatureStats, Standardization};
use crate::train::Metrics;

/// The format version written into every frame and the only one accepted.
pub const VERSION: u8 = 1;

const CRC_LEN: usize = 4;
const MAX_PREFIX_LEN: usize = 5;
const MAX_HEADER_LEN: usize = 1 + 1 + 3 * 3 + 5 + 5;

/// Computes the frame checksum, CRC-32/ISO-HDLC. `crc32fast` uses
/// carry-less multiplication where the processor has it, detected at run
/// time with the `std` feature, and sixteen 1 KiB tables elsewhere. Every
/// path gives the same value.
fn checksum(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytes);
    hasher.finalize()
}

/// What a frame carries. The postcard encoding is the variant's position,
/// starting at 0 for `Train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrameKind {
    /// Server to site: train the given global model for some epochs.
    Train,
    /// Server to site: evaluate the given model on the test rows.
    Evaluate,
    /// Site to server: parameters after local training, with the row count.
    Update,
    /// Site to server: evaluation results.
    Metrics,
    /// Server to site: send per-feature statistics of the training rows.
    StatsRequest,
    /// Site to server: per-feature statistics of the training rows.
    FeatureStats,
    /// Server to site: the federation's mean and scale per feature.
    Standardize,
    /// A trained model saved for later scoring: the parameters with the
    /// standardisation and feature count that raw rows need.
    Model,
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Train => "train",
            Self::Evaluate => "evaluate",
            Self::Update => "update",
            Self::Metrics => "metrics",
            Self::StatsRequest => "stats-request",
            Self::FeatureStats => "feature-stats",
            Self::Standardize => "standardize",
            Self::Model => "model",
        };
        f.write_str(name)
    }
}

/// The fields every frame starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Format version, [`VERSION`].
    pub version: u8,
    /// What the payload is.
    pub kind: FrameKind,
    /// The layer widths of the model the frame belongs to.
    pub fingerprint: Fingerprint,
    /// Federated round, counted from 1; 0 outside a round.
    pub round: u32,
    /// The site that sends or receives the frame.
    pub client: u32,
}

impl Header {
    /// A header of the current version for the `INPUTS → HIDDEN1 → HIDDEN2
    /// → 1` model.
    pub const fn new<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
        kind: FrameKind,
        round: u32,
        client: u32,
    ) -> Self {
        Self {
            version: VERSION,
            kind,
            fingerprint: Fingerprint::of::<INPUTS, HIDDEN1, HIDDEN2>(),
            round,
            client,
        }
    }
}

/// A frame decoded by [`decode`]. Frames with parameters wrote them into
/// the buffer passed to `decode`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Frame<const INPUTS: usize> {
    /// Train the parameters for `epochs` local epochs.
    Train {
        /// Common fields.
        header: Header,
        /// Local epochs to train.
        epochs: u16,
    },
    /// Evaluate the parameters.
    Evaluate {
        /// Common fields.
        header: Header,
    },
    /// Parameters trained on `rows` rows.
    Update {
        /// Common fields.
        header: Header,
        /// Training rows behind the update.
        rows: u32,
    },
    /// Evaluation results.
    Metrics {
        /// Common fields.
        header: Header,
        /// The results.
        metrics: Metrics,
    },
    /// A request for feature statistics.
    StatsRequest {
        /// Common fields.
        header: Header,
    },
    /// Feature statistics.
    FeatureStats {
        /// Common fields.
        header: Header,
        /// The statistics.
        stats: FeatureStats<INPUTS>,
    },
    /// The standardisation to apply.
    Standardize {
        /// Common fields.
        header: Header,
        /// Mean and scale per feature.
        standardization: Standardization<INPUTS>,
    },
    /// A saved model; its parameters were written to the buffer.
    Model {
        /// Common fields.
        header: Header,
        /// Features of the rows it scores; model inputs past them are zero
        /// padding.
        features: u16,
        /// Mean and scale per feature for raw rows.
        standardization: Standardization<INPUTS>,
    },
}

impl<const INPUTS: usize> Frame<INPUTS> {
    /// The frame's header.
    pub fn header(&self) -> &Header {
        match self {
            Self::Train { header, .. }
            | Self::Evaluate { header }
            | Self::Update { header, .. }
            | Self::Metrics { header, .. }
            | Self::StatsRequest { header }
            | Self::FeatureStats { header, .. }
            | Self::Standardize { header, .. }
            | Self::Model { header, .. } => header,
        }
    }
}

/// Why a frame could not be encoded.
///
/// The `index` of `NonFinite` and `OutOfRange` counts the values of one
/// group in wire order. The groups are the parameters, the counts, means
/// and sums of squared deviations of feature statistics, and the means and
/// scales of a standardisation, in a model frame too. A metrics record
/// gives 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferTooSmall {
        /// Bytes the buffer holds.
        available: usize,
    },
    /// The payload contains NaN or an infinity, which no receiver accepts.
    NonFinite {
        /// Index of the first such value; see [`EncodeError`].
        index: usize,
    },
    /// A statistic or standardisation value is finite but outside its
    /// range, as [`DecodeError::OutOfRange`] describes; no receiver
    /// accepts it.
    OutOfRange {
        /// Index of the first such value; see [`EncodeError`].
        index: usize,
    },
    /// An update claims zero training rows, which no server accepts.
    NoRows,
    /// A model frame's feature count is 0 or above the model's inputs.
    FeatureCount {
        /// The feature count given.
        features: u16,
        /// The model's inputs.
        inputs: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferTooSmall { available } => write!(
                f,
                "frame does not fit the {available}-byte buffer; size it with wire::frame_capacity"
            ),
            Self::NonFinite { index } => write!(
                f,
                "value {index} of the payload is NaN or infinite; such a frame would be rejected, so it is not encoded"
            ),
            Self::OutOfRange { index } => write!(
                f,
                "value {index} of the payload is out of range (a scale must be positive, a sum of squared deviations not negative, and a feature without values has mean and sum 0); such a frame would be rejected, so it is not encoded"
            ),
            Self::NoRows => f.write_str(
                "an update of 0 training rows would be rejected, so it is not encoded; train on at least one row first",
            ),
            Self::FeatureCount { features, inputs } => write!(
                f,
                "feature count {features} is invalid for a {inputs}-input model; use 1 to {inputs}"
            ),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Why a frame was rejected. Every variant is reachable from bytes that
/// arrive from outside; none of them panics.
///
/// The `index` of `NonFinite` and `OutOfRange` counts the values of one
/// group in wire order. The groups are the parameters, the counts, means
/// and sums of squared deviations of feature statistics, and the means and
/// scales of a standardisation, in a model frame too. A metrics record
/// gives 0.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame ends before its length prefix, body or checksum does.
    Truncated {
        /// Bytes the frame needs, as far as its prefix tells.
        needed: usize,
        /// Bytes received.
        available: usize,
    },
    /// The length prefix claims a frame longer than any frame of this
    /// model, [`frame_capacity`]: the prefix is corrupt, or the frame is
    /// for another model. Nothing after the prefix was read.
    TooLong {
        /// Bytes the prefix claims, capped at `usize::MAX`.
        claimed: usize,
        /// The maximum frame length of this model, in bytes.
        max: usize,
    },
    /// Bytes follow the checksum.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The CRC-32 does not match: the frame was corrupted.
    Checksum {
        /// The checksum stored in the frame.
        stored: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// The frame has a format version this build does not read.
    UnsupportedVersion {
        /// Version in the frame.
        found: u8,
    },
    /// The frame is for a model of other layer widths.
    ModelMismatch {
        /// This model's widths.
        expected: Fingerprint,
        /// The frame's widths.
        found: Fingerprint,
    },
    /// The frame is of another kind than the receiver requires.
    UnexpectedKind {
        /// The kind required.
        expected: FrameKind,
        /// The kind received.
        found: FrameKind,
    },
    /// The checksum matched but the body does not parse: a sender bug.
    Malformed,
    /// A float in the payload is NaN or infinite.
    NonFinite {
        /// Index of the first such value; see [`DecodeError`].
        index: usize,
    },
    /// An update claims zero training rows.
    NoRows,
    /// A model frame's feature count is 0 or above the model's inputs.
    FeatureCount {
        /// The feature count in the frame.
        features: u16,
        /// The model's inputs.
        inputs: usize,
    },
    /// Metrics whose confusion counts do not add up to their row count, or
    /// whose loss sum is negative.
    InconsistentMetrics,
    /// A statistic or standardisation value is outside its valid range:
    /// a scale that is not positive, a count of 0 with a non-zero sum, or a
    /// negative sum of squared deviations.
    OutOfRange {
        /// Index of the first such value; see [`DecodeError`].
        index: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, available } => write!(
                f,
                "frame truncated: it needs {needed} bytes but {available} arrived; resend the whole frame"
            ),
            Self::TooLong { claimed, max } => write!(
                f,
                "frame length prefix claims {claimed} bytes but no frame of this model exceeds {max}; the prefix is corrupt or the sender runs another model, so resynchronise the link"
            ),
            Self::TrailingBytes { extra } => write!(
                f,
                "{extra} unexpected bytes follow the frame's checksum; send one frame per message, and resend if the length prefix was corrupted"
            ),
            Self::Checksum { stored, computed } => write!(
                f,
                "frame corrupted: stored CRC-32 {stored:#010x} but the bytes give {computed:#010x}; resend it"
            ),
            Self::UnsupportedVersion { found } => write!(
                f,
                "frame format version {found} is not supported (this build reads version {VERSION}); run the same fedcore version on both ends"
            ),
            Self::ModelMismatch { expected, found } => write!(
                f,
                "frame is for a {found} model but this model is {expected}; configure both ends with the same layer widths and features"
            ),
            Self::UnexpectedKind { expected, found } => write!(
                f,
                "received a {found} frame where a {expected} frame was required"
            ),
            Self::Malformed => f.write_str(
                "frame body does not parse although its checksum matches; the sender encodes frames wrongly",
            ),
            Self::NonFinite { index } => write!(
                f,
                "value {index} of the payload is NaN or infinite; the sender's training diverged"
            ),
            Self::NoRows => f.write_str("update claims 0 training rows; a site must train on at least one row"),
            Self::FeatureCount { features, inputs } => write!(
                f,
                "model frame declares {features} features but the model has {inputs} inputs; it needs 1 to {inputs}, so the file or its sender is faulty"
            ),
            Self::InconsistentMetrics => f.write_str(
                "metrics frame is inconsistent: its confusion counts do not add up to its rows, or its loss is negative; the sender computes metrics wrongly",
            ),
            Self::OutOfRange { index } => write!(
                f,
                "value {index} of the payload is out of range (a scale must be positive, a sum of squared deviations not negative); the sender computes statistics wrongly"
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Returns a buffer size that fits every frame of the `INPUTS → HIDDEN1 →
/// HIDDEN2 → 1` model.
pub const fn frame_capacity<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
) -> usize {
    // A Model frame has the maximum length among frames with parameters.
    let model = Params::<INPUTS, HIDDEN1, HIDDEN2>::COUNT * 4 + 3 + INPUTS * 16;
    let model = MAX_PREFIX_LEN + MAX_HEADER_LEN + model + CRC_LEN;
    let others = stream_buffer_len::<INPUTS, HIDDEN1, HIDDEN2>();
    if model > others {
        model
    } else {
        others
    }
}

// ---------------------------------------------------------------------------
// Encoding

/// Writes the parameters as little-endian `f32` in wire order, which is
/// postcard's encoding of a tuple of `f32`, and returns the bytes written.
fn put_params<const I: usize, const H1: usize, const H2: usize>(
    area: &mut [u8],
    params: &Params<I, H1, H2>,
) -> postcard::Result<usize> {
    let len = Params::<I, H1, H2>::COUNT * 4;
    let mut area = area
        .get_mut(..len)
        .ok_or(postcard::Error::SerializeBufferFull)?;
    for tensor in params.tensors() {
        let (head, rest) = area.split_at_mut(tensor.len() * 4);
        for (bytes, value) in head.chunks_exact_mut(4).zip(tensor) {
            bytes.copy_from_slice(&value.to_le_bytes());
        }
        area = rest;
    }
    Ok(len)
}

struct ArrayRef<'a, T>(&'a [T]);

impl<T: Serialize> Serialize for ArrayRef<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for value in self.0 {
            tuple.serialize_element(value)?;
        }
        tuple.end()
    }
}

/// Writes a frame into `out` and returns its length: postcard writes the
/// body after room for the longest prefix, and the body then moves down
/// next to the actual prefix.
fn encode_with(
    out: &mut [u8],
    header: &Header,
    write_payload: impl FnOnce(&mut [u8]) -> postcard::Result<usize>,
) -> Result<usize, EncodeError> {
    let available = out.len();
    let too_small = EncodeError::BufferTooSmall { available };
    let body_area = out.get_mut(MAX_PREFIX_LEN..).ok_or(too_small)?;
    let header_len = postcard::to_slice(header, body_area)
        .map_err(|_| too_small)?
        .len();
    let payload_area = body_area.get_mut(header_len..).ok_or(too_small)?;
    let payload_len = write_payload(payload_area).map_err(|_| too_small)?;
    let body_len = header_len + payload_len;

    let mut prefix = [0u8; MAX_PREFIX_LEN];
    // A body is far smaller than 4 GiB, so its length fits the u32 varint.
    let prefix_len = postcard::to_slice(&(body_len as u32), &mut prefix)
        .map_err(|_| too_small)?
        .len();
    out.copy_within(MAX_PREFIX_LEN..MAX_PREFIX_LEN + body_len, prefix_len);
    out[..prefix_len].copy_from_slice(&prefix[..prefix_len]);

    let crc_at = prefix_len + body_len;
    let crc = checksum(&out[..crc_at]);
    out.get_mut(crc_at..crc_at + CRC_LEN)
        .ok_or(too_small)?
        .copy_from_slice(&crc.to_le_bytes());
    Ok(crc_at + CRC_LEN)
}

fn check_finite(values: impl Iterator<Item = f64>) -> Result<(), usize> {
    match values.enumerate().find(|(_, value)| !value.is_finite()) {
        Some((index, _)) => Err(index),
        None => Ok(()),
    }
}

fn encode_params<const I: usize, const H1: usize, const H2: usize>(
    out: &mut [u8],
    header: &Header,
    leading: Option<u32>,
    params: &Params<I, H1, H2>,
) -> Result<usize, EncodeError> {
    if let Some(index) = params.first_non_finite() {
        return Err(EncodeError::NonFinite { index });
    }
    encode_with(out, header, |area| {
        let mut used = 0;
        if let Some(value) = leading {
            used = postcard::to_slice(&value, area)?.len();
        }
        let rest = area
            .get_mut(used..)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        Ok(used + put_params(rest, params)?)
    })
}

/// Encodes a request to train `params` for `epochs` local epochs.
pub fn encode_train<const I: usize, const H1: usize, const H2: usize>(
    out: &mut [u8],
    round: u32,
    client: u32,
    epochs: u16,
    params: &Params<I, H1, H2>,
) -> Result<usize, EncodeError> {
    let header = Header::new::<I, H1, H2>(FrameKind::Train, round, client);
    encode_params(out, &header, Some(u32::from(epochs)), params)
}

/// Encodes a request to evaluate `params` on the site's test rows.
pub fn encode_evaluate<const I: usize, const H1: usize, const H2: usize>(
    out: &mut [u8],
    round: u32,
    client: u32,
    params: &Params<I, H1, H2>,
) -> Result<usize, EncodeError> {
    let header = Header::new::<I, H1, H2>(FrameKind::Evaluate, round, client);
    encode_params(out, &header, None, params)
}

/// Encodes a site's update: `params` trained on `rows` training rows.
pub fn encode_update<const I: usize, const H1: usize, const H2: usize>(
    out: &mut [u8],
    round: u32,
    client: u32,
    rows: u32,
    params: &Params<I, H1, H2>,
) -> Result<usize, EncodeError> {
    if rows == 0 {
        return Err(EncodeError::NoRows);
    }
    let header = Header::new::<I, H1, H2>(FrameKind::Update, round, client);
    encode_params(out, &header, Some(rows), params)
}

/// Encodes evaluation results.
pub fn encode_metrics<const I: usize, const H1: usize, const H2: usize>(
    out: &mut [u8],
    round: u32,
    client: u32,
    metrics: &Metrics,
) -> Result<usize, EncodeError> {
    if !metrics.loss_sum.is_finite() {
        return Err(EncodeError::NonFinite { index: 0 });
    }
    let header = Header::new::<I, H1, H2>(FrameKind::Metrics, round, client);
    encode_with(out, &header, |area| {
        Ok(postcard::to_slice(metrics, area)?.len())
    })
}

/// Encodes a request for feature statistics.
pub fn encode_stats_request<const I: usize, const H1: usize, const H2: usize>(
    out: &mut [u8],
    client: u32,
) -> Result<usize, EncodeError> {
    let header = Header::new::<I, H1, H2>(FrameKind::StatsRequest, 0, client);
    encode_with(out, &header, |_| Ok(0))
}

/// Encodes a site's feature statistics.
pub fn encode_feature_stats<const I: usize, const H1: usize, const H2: usize>(
    out: &mut [u8],
    client: u32,
    stats: &FeatureStats<I>,
) -> Result<usize, EncodeError> {
    // The counts come first in wire order and are integers.
    let floats = stats.mean.iter().chain(&stats.m2).copied();
    check_finite(floats).map_err(|index| EncodeError::NonFinite { index: I + index })?;
    if let Some(index) = stats.first_invalid() {
        return Err(EncodeError::OutOfRange { index });
    }
    let header = Header::new::<I, H1, H2>(FrameKind::FeatureStats, 0, client);
    encode_with(out, &header, |area| {
        let mut used = postcard::to_slice(&ArrayRef(&stats.count), area)?.len();
        for floats in [&stats.mean, &stats.m2] {
            let rest = area
                .get_mut(used..)
                .ok_or(postcard::Error::SerializeBufferFull)?;
            used += postcard::to_slice(&ArrayRef(floats), rest)?.len();
        }
        Ok(used)
    })
}

/// Rejects a standardisation that no receiver accepts: a NaN or infinite
/// value, or a scale that is not positive.
fn check_standardization<const I: usize>(
    standardization: &Standardization<I>,
) -> Result<(), EncodeError> {
    let floats = standardization
        .mean
        .iter()
        .chain(&standardization.scale)
        .copied();
    check_finite(floats).map_err(|index| EncodeError::NonFinite { index })?;
    match standardization.first_invalid() {
        Some(index) => Err(EncodeError::OutOfRange { index }),
        None => Ok(()),
    }
}

/// Encodes the standardisation every site applies to its rows.
pub fn encode_standardize<const I: usize, const H1: usize, const H2: usize>(
    out: &mut [u8],
    client: u32,
    standardization: &Standardization<I>,
) -> Result<usize, EncodeError> {
    check_standardization(standardization)?;
    let header = Header::new::<I, H1, H2>(FrameKind::Standardize, 0, client);
    encode_with(out, &header, |area| {
        let mut used = postcard::to_slice(&ArrayRef(&standardization.mean), area)?.len();
        let rest = area
            .get_mut(used..)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        used += postcard::to_slice(&ArrayRef(&standardization.scale), rest)?.len();
        Ok(used)
    })
}

/// Encodes a trained model with the standardisation and feature count its
/// rows need, for saving to a file. `round` records how many rounds trained it.
pub fn encode_model<const I: usize, const H1: usize, const H2: usize>(
    out: &mut [u8],
    round: u32,
    features: u16,
    standardization: &Standardization<I>,
    params: &Params<I, H1, H2>,
) -> Result<usize, EncodeError> {
    check_standardization(standardization)?;
    if features == 0 || usize::from(features) > I {
        return Err(EncodeError::FeatureCount {
            features,
            inputs: I,
        });
    }
    if let Some(index) = params.first_non_finite() {
        return Err(EncodeError::NonFinite { index });
    }
    let header = Header::new::<I, H1, H2>(FrameKind::Model, round, 0);
    encode_with(out, &header, |area| {
        let mut used = postcard::to_slice(&features, area)?.len();
        for floats in [&standardization.mean, &standardization.scale] {
            let rest = area
                .get_mut(used..)
                .ok_or(postcard::Error::SerializeBufferFull)?;
            used += postcard::to_slice(&ArrayRef(floats), rest)?.len();
        }
        let rest = area
            .get_mut(used..)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        Ok(used + put_params(rest, params)?)
    })
}

// ---------------------------------------------------------------------------
// Decoding

struct FillSeed<'a, T>(&'a mut [T]);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for FillSeed<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let len = self.0.len();
        deserializer.deserialize_tuple(len, self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for FillSeed<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} values", self.0.len())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let len = self.0.len();
        for (index, slot) in self.0.iter_mut().enumerate() {
            *slot = seq.next_element()?.ok_or_else(|| {
                A::Error::invalid_length(index, &"as many values as the model has")
            })?;
        }
        debug_assert_eq!(len, self.0.len());
        Ok(())
    }
}

/// Checks the length prefix against `max_len`, then the checksum and
/// version of `frame`, and returns its header and the payload bytes after
/// it.
fn open(frame: &[u8], max_len: usize) -> Result<(Header, &[u8]), DecodeError> {
    let available = frame.len();
    let (body_len, after_prefix) = match postcard::take_from_bytes::<u32>(frame) {
        Ok(parsed) => parsed,
        Err(postcard::Error::DeserializeUnexpectedEnd) => {
            return Err(DecodeError::Truncated {
                needed: available + 1,
                available,
            })
        }
        Err(_) => return Err(DecodeError::Malformed),
    };
    let prefix_len = available - after_prefix.len();
    let needed = prefix_len
        .saturating_add(body_len as usize)
        .saturating_add(CRC_LEN);
    if needed > max_len {
        return Err(DecodeError::TooLong {
            claimed: needed,
            max: max_len,
        });
    }
    if available < needed {
        return Err(DecodeError::Truncated { needed, available });
    }
    if available > needed {
        return Err(DecodeError::TrailingBytes {
            extra: available - needed,
        });
    }

    let crc_at = needed - CRC_LEN;
    let mut stored = [0u8; CRC_LEN];
    stored.copy_from_slice(&frame[crc_at..]);
    let stored = u32::from_le_bytes(stored);
    let computed = checksum(&frame[..crc_at]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }

    let body = &frame[prefix_len..crc_at];
    // The version is the body's first byte whatever the rest of the header
    // looks like, so a newer sender gets the version error, not "malformed".
    match body.first() {
        Some(&VERSION) => {}
        Some(&found) => return Err(DecodeError::UnsupportedVersion { found }),
        None => return Err(DecodeError::Malformed),
    }
    postcard::take_from_bytes::<Header>(body).map_err(|_| DecodeError::Malformed)
}

/// Reads and checks only the header of `frame`: length, checksum and
/// version. Use it to route a frame before decoding it.
pub fn peek_header(frame: &[u8]) -> Result<Header, DecodeError> {
    open(frame, usize::MAX).map(|(header, _)| header)
}

fn read_params<'p, const I: usize, const H1: usize, const H2: usize>(
    payload: &'p [u8],
    params: &mut Params<I, H1, H2>,
) -> Result<&'p [u8], DecodeError> {
    let len = Params::<I, H1, H2>::COUNT * 4;
    if payload.len() < len {
        return Err(DecodeError::Malformed);
    }
    let (mut bytes, rest) = payload.split_at(len);
    for tensor in params.tensors_mut() {
        let (head, tail) = bytes.split_at(tensor.len() * 4);
        for (value, le) in tensor.iter_mut().zip(head.chunks_exact(4)) {
            *value = f32::from_le_bytes([le[0], le[1], le[2], le[3]]);
        }
        bytes = tail;
    }
    if let Some(index) = params.first_non_finite() {
        return Err(DecodeError::NonFinite { index });
    }
    Ok(rest)
}

fn read_array<'p, T: Deserialize<'p>>(
    payload: &'p [u8],
    out: &mut [T],
) -> Result<&'p [u8], DecodeError> {
    let mut deserializer = postcard::Deserializer::from_bytes(payload);
    FillSeed(out)
        .deserialize(&mut deserializer)
        .map_err(|_| DecodeError::Malformed)?;
    deserializer.finalize().map_err(|_| DecodeError::Malformed)
}

fn expect_end(rest: &[u8]) -> Result<(), DecodeError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Malformed)
    }
}

/// Decodes and checks a frame for the `I → H1 → H2 → 1` model.
///
/// Parameters of `Train`, `Evaluate` and `Update` frames are written into
/// `params`. On an error `params` may hold part of a frame, so decode into
/// a scratch buffer when the current parameters must survive a bad frame.
pub fn decode<const I: usize, const H1: usize, const H2: usize>(
    frame: &[u8],
    params: &mut Params<I, H1, H2>,
) -> Result<Frame<I>, DecodeError> {
    let (header, payload) = open(frame, frame_capacity::<I, H1, H2>())?;
    let expected = Fingerprint::of::<I, H1, H2>();
    if header.fingerprint != expected {
        return Err(DecodeError::ModelMismatch {
            expected,
            found: header.fingerprint,
        });
    }

    let frame = match header.kind {
        FrameKind::Train => {
            let (epochs, rest) =
                postcard::take_from_bytes::<u16>(payload).map_err(|_| DecodeError::Malformed)?;
            expect_end(read_params(rest, params)?)?;
            Frame::Train { header, epochs }
        }
        FrameKind::Evaluate => {
            expect_end(read_params(payload, params)?)?;
            Frame::Evaluate { header }
        }
        FrameKind::Update => {
            let (rows, rest) =
                postcard::take_from_bytes::<u32>(payload).map_err(|_| DecodeError::Malformed)?;
            expect_end(read_params(rest, params)?)?;
            if rows == 0 {
                return Err(DecodeError::NoRows);
            }
            Frame::Update { header, rows }
        }
        FrameKind::Metrics => {
            let (metrics, rest) = postcard::take_from_bytes::<Metrics>(payload)
                .map_err(|_| DecodeError::Malformed)?;
            expect_end(rest)?;
            if !metrics.loss_sum.is_finite() {
                return Err(DecodeError::NonFinite { index: 0 });
            }
            if !metrics.is_consistent() {
                return Err(DecodeError::InconsistentMetrics);
            }
            Frame::Metrics { header, metrics }
        }
        FrameKind::StatsRequest => {
            expect_end(payload)?;
            Frame::StatsRequest { header }
        }
        FrameKind::FeatureStats => {
            let mut stats = FeatureStats::<I>::default();
            let rest = read_array(payload, &mut stats.count)?;
            let rest = read_array(rest, &mut stats.mean)?;
            expect_end(read_array(rest, &mut stats.m2)?)?;
            // The counts come first in wire order and are integers.
            let floats = stats.mean.iter().chain(&stats.m2).copied();
            check_finite(floats).map_err(|index| DecodeError::NonFinite { index: I + index })?;
            if let Some(index) = stats.first_invalid() {
                return Err(DecodeError::OutOfRange { index });
            }
            Frame::FeatureStats { header, stats }
        }
        FrameKind::Standardize => {
            let mut standardization = Standardization {
                mean: [0.0; I],
                scale: [1.0; I],
            };
            let rest = read_array(payload, &mut standardization.mean)?;
            expect_end(read_array(rest, &mut standardization.scale)?)?;
            let floats = standardization
                .mean
                .iter()
                .chain(&standardization.scale)
                .copied();
            check_finite(floats).map_err(|index| DecodeError::NonFinite { index })?;
            if let Some(index) = standardization.first_invalid() {
                return Err(DecodeError::OutOfRange { index });
            }
            Frame::Standardize {
                header,
                standardization,
            }
        }
        FrameKind::Model => {
            let (features, rest) =
                postcard::take_from_bytes::<u16>(payload).map_err(|_| DecodeError::Malformed)?;
            let mut standardization = Standardization {
                mean: [0.0; I],
                scale: [1.0; I],
            };
            let rest = read_array(rest, &mut standardization.mean)?;
            let rest = read_array(rest, &mut standardization.scale)?;
            expect_end(read_params(rest, params)?)?;
            if let Some(index) = standardization.first_invalid() {
                return Err(DecodeError::OutOfRange { index });
            }
            if features == 0 || usize::from(features) > I {
                return Err(DecodeError::FeatureCount {
                    features,
                    inputs: I,
                });
            }
            Frame::Model {
                header,
                features,
                standardization,
            }
        }
    };
    Ok(frame)
}

// ---------------------------------------------------------------------------
// Streaming

/// A byte source for [`read_frame`]: a serial port, a socket or a slice.
pub trait Source {
    /// A failure of the underlying transport.
    type Error;

    /// Reads up to `buf.len()` bytes into `buf` and returns how many, or 0
    /// when the stream has ended. Blocks until at least one byte arrives.
    /// An error may leave the stream inside a frame; [`read_frame`] does
    /// not resynchronise, so reset the link before reading on.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
}

/// Where the `write_*` functions send a frame's bytes.
pub trait Sink {
    /// A failure of the underlying transport.
    type Error;

    /// Writes all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

impl Source for &[u8] {
    type Error = core::convert::Infallible;

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let len = buf.len().min(self.len());
        let (head, rest) = self.split_at(len);
        buf[..len].copy_from_slice(head);
        *self = rest;
        Ok(len)
    }
}

/// The reason [`read_frame`] returned no frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadError<E> {
    /// The transport failed.
    Io(E),
    /// The frame was rejected, as [`decode`] would reject the same bytes.
    /// The stream is positioned after the frame, at its end when the error
    /// is [`DecodeError::Truncated`], and just after the length prefix
    /// when it is [`DecodeError::TooLong`] or a malformed prefix.
    Decode(DecodeError),
    /// The working buffer is shorter than [`stream_buffer_len`]; nothing
    /// was read.
    BufferTooSmall {
        /// Bytes the buffer needs.
        needed: usize,
        /// Bytes it has.
        available: usize,
    },
}

impl<E: fmt::Debug> fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(error) => write!(f, "reading a frame failed: {error:?}"),
            Self::Decode(error) => error.fmt(f),
            Self::BufferTooSmall { needed, available } => write!(
                f,
                "the {available}-byte frame buffer is too small; size it with wire::stream_buffer_len ({needed} bytes for this model)"
            ),
        }
    }
}

/// The reason a `write_*` function did not send the whole frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WriteError<E> {
    /// The transport failed after part of the frame may have been sent.
    Io(E),
    /// The frame could not be encoded; nothing was sent.
    Encode(EncodeError),
}

impl<E: fmt::Debug> fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(error) => write!(f, "writing a frame failed: {error:?}"),
            Self::Encode(error) => error.fmt(f),
        }
    }
}

/// Returns the working buffer size that [`read_frame`] needs for the
/// `INPUTS → HIDDEN1 → HIDDEN2 → 1` model: the longest frame without
/// parameters. It is 450 bytes for the default model, against 14,181 for
/// [`frame_capacity`].
pub const fn stream_buffer_len<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
) -> usize {
    let stats = INPUTS * (5 + 8 + 8);
    let model_head = 3 + INPUTS * 16;
    let metrics = 5 * 5 + 8;
    let mut payload = stats;
    if model_head > payload {
        payload = model_head;
    }
    if metrics > payload {
        payload = metrics;
    }
    MAX_PREFIX_LEN + MAX_HEADER_LEN + payload + CRC_LEN
}

/// Bytes pulled from a [`Source`] into the running checksum.
struct Incoming<'s, S: Source> {
    source: &'s mut S,
    hasher: crc32fast::Hasher,
    /// Bytes read so far.
    received: usize,
    /// Bytes the frame needs, once its prefix is known.
    needed: usize,
}

impl<S: Source> Incoming<'_, S> {
    /// Fills `buf` from the source, or fails with `Truncated` when the
    /// stream ends first.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), ReadError<S::Error>> {
        let mut filled = 0;
        while filled < buf.len() {
            let read = self
                .source
                .read(&mut buf[filled..])
                .map_err(ReadError::Io)?;
            if read == 0 {
                return Err(ReadError::Decode(DecodeError::Truncated {
                    needed: self.needed,
                    available: self.received,
                }));
            }
            filled += read;
            self.received += read;
        }
        Ok(())
    }

    /// Fills `buf` and adds it to the checksum.
    fn fill_checked(&mut self, buf: &mut [u8]) -> Result<(), ReadError<S::Error>> {
        self.fill(buf)?;
        self.hasher.update(buf);
        Ok(())
    }
}

/// Reads one frame from `source` and decodes it for the `I → H1 → H2 → 1`
/// model, writing parameters straight into `params`, with a working
/// buffer of [`stream_buffer_len`] bytes instead of a whole frame.
///
/// Returns `Ok(None)` when the stream ends before a frame starts. Bytes
/// after the frame stay in the stream for the next call. Otherwise the
/// result is the one [`decode`] gives for the frame's bytes, errors
/// included; short frames go through [`decode`] itself. One difference
/// remains: a frame with parameters is checked
/// against its CRC-32 only after its parameters have been written, so on
/// an error `params` may hold any part of it. Keep the trained state
/// elsewhere, or receive only models that replace it, as a site does.
pub fn read_frame<S: Source, const I: usize, const H1: usize, const H2: usize>(
    source: &mut S,
    buffer: &mut [u8],
    params: &mut Params<I, H1, H2>,
) -> Result<Option<Frame<I>>, ReadError<S::Error>> {
    let needed = stream_buffer_len::<I, H1, H2>();
    if buffer.len() < needed {
        return Err(ReadError::BufferTooSmall {
            needed,
            available: buffer.len(),
        });
    }
    let mut incoming = Incoming {
        source,
        hasher: crc32fast::Hasher::new(),
        received: 0,
        needed: 1,
    };

    // The prefix: one byte at a time until postcard reads a whole varint.
    let (body_len, prefix_len) = loop {
        let at = incoming.received;
        incoming.needed = at + 1;
        let read = incoming
            .source
            .read(&mut buffer[at..at + 1])
            .map_err(ReadError::Io)?;
        if read == 0 {
            if at == 0 {
                return Ok(None);
            }
            return Err(ReadError::Decode(DecodeError::Truncated {
                needed: at + 1,
                available: at,
            }));
        }
        incoming.received += 1;
        match postcard::take_from_bytes::<u32>(&buffer[..=at]) {
            Ok((body_len, _)) => break (body_len as usize, at + 1),
            Err(postcard::Error::DeserializeUnexpectedEnd) => {}
            Err(_) => {
                // The same rejection decode gives; the rest of the frame
                // cannot be found, so the stream stops here.
                return Err(ReadError::Decode(DecodeError::Malformed));
            }
        }
    };
    let total = prefix_len.saturating_add(body_len).saturating_add(CRC_LEN);
    let max = frame_capacity::<I, H1, H2>();
    if total > max {
        return Err(ReadError::Decode(DecodeError::TooLong {
            claimed: total,
            max,
        }));
    }
    incoming.needed = total;

    if total <= buffer.len() {
        incoming.fill(&mut buffer[prefix_len..total])?;
        return decode(&buffer[..total], params)
            .map(Some)
            .map_err(ReadError::Decode);
    }
    incoming.hasher.update(&buffer[..prefix_len]);
    read_long_body(&mut incoming, buffer, body_len, params).map(Some)
}

/// The parts of a long frame that come before its parameters.
struct LongHead<const I: usize> {
    header: Header,
    /// Epochs, rows or feature count, for the kinds that carry one.
    leading: u32,
    standardization: Option<Standardization<I>>,
}

/// Parses the start of a long frame's body as [`decode`] would, and
/// returns the parts before the parameters with the bytes they took.
fn parse_long_head<const I: usize, const H1: usize, const H2: usize>(
    body: &[u8],
) -> Result<(LongHead<I>, usize), DecodeError> {
    match body.first() {
        Some(&VERSION) => {}
        Some(&found) => return Err(DecodeError::UnsupportedVersion { found }),
        None => return Err(DecodeError::Malformed),
    }
    let (header, rest) =
        postcard::take_from_bytes::<Header>(body).map_err(|_| DecodeError::Malformed)?;
    let expected = Fingerprint::of::<I, H1, H2>();
    if header.fingerprint != expected {
        return Err(DecodeError::ModelMismatch {
            expected,
            found: header.fingerprint,
        });
    }
    let malformed = |_| DecodeError::Malformed;
    let (leading, standardization, rest) = match header.kind {
        FrameKind::Train => {
            let (epochs, rest) = postcard::take_from_bytes::<u16>(rest).map_err(malformed)?;
            (u32::from(epochs), None, rest)
        }
        FrameKind::Evaluate => (0, None, rest),
        FrameKind::Update => {
            let (rows, rest) = postcard::take_from_bytes::<u32>(rest).map_err(malformed)?;
            (rows, None, rest)
        }
        FrameKind::Model => {
            let (features, rest) = postcard::take_from_bytes::<u16>(rest).map_err(malformed)?;
            let mut standardization = Standardization {
                mean: [0.0; I],
                scale: [1.0; I],
            };
            let rest = read_array(rest, &mut standardization.mean)?;
            let rest = read_array(rest, &mut standardization.scale)?;
            (u32::from(features), Some(standardization), rest)
        }
        // These kinds are never this long, so decode rejects such a body
        // when it finds bytes left over.
        FrameKind::Metrics
        | FrameKind::StatsRequest
        | FrameKind::FeatureStats
        | FrameKind::Standardize => return Err(DecodeError::Malformed),
    };
    let head = LongHead {
        header,
        leading,
        standardization,
    };
    Ok((head, body.len() - rest.len()))
}

/// Reads the body and checksum of a frame longer than the buffer. The
/// prefix is in `buffer[..incoming.received]` and in the checksum.
fn read_long_body<S: Source, const I: usize, const H1: usize, const H2: usize>(
    incoming: &mut Incoming<'_, S>,
    buffer: &mut [u8],
    body_len: usize,
    params: &mut Params<I, H1, H2>,
) -> Result<Frame<I>, ReadError<S::Error>> {
    // The head fills the buffer, or takes the whole body when the body is
    // shorter than the buffer and only its checksum did not fit.
    let head_len = buffer.len().min(body_len);
    incoming.fill_checked(&mut buffer[..head_len])?;
    let parsed = parse_long_head::<I, H1, H2>(&buffer[..head_len]);

    let params_len = Params::<I, H1, H2>::COUNT * 4;
    let mut body_left = body_len - head_len;
    let mut carried = 0;
    if let Ok((_, used)) = &parsed {
        buffer.copy_within(*used..head_len, 0);
        carried = head_len - used;
    }
    // Parameters go into `params` while the payload has room for them;
    // anything else in the body is only checksummed.
    let mut values = params.iter_mut();
    let mut written = 0;
    loop {
        let whole = carried - carried % 4;
        if parsed.is_ok() {
            for le in buffer[..whole].chunks_exact(4) {
                if written == params_len {
                    break;
                }
                if let Some(value) = values.next() {
                    *value = f32::from_le_bytes([le[0], le[1], le[2], le[3]]);
                }
                written += 4;
            }
        }
        buffer.copy_within(whole..carried, 0);
        carried -= whole;
        if body_left == 0 {
            break;
        }
        let take = (buffer.len() - carried).min(body_left);
        incoming.fill_checked(&mut buffer[carried..carried + take])?;
        carried += take;
        body_left -= take;
    }
    drop(values);
    let payload_left = match &parsed {
        Ok((_, used)) => body_len - used,
        Err(_) => 0,
    };

    let mut stored = [0u8; CRC_LEN];
    incoming.fill(&mut stored)?;
    let stored = u32::from_le_bytes(stored);
    let computed = incoming.hasher.clone().finalize();
    if stored != computed {
        return Err(ReadError::Decode(DecodeError::Checksum {
            stored,
            computed,
        }));
    }
    let (head, _) = parsed.map_err(ReadError::Decode)?;
    finish_long_frame(head, payload_left, params_len, params).map_err(ReadError::Decode)
}

/// Applies [`decode`]'s checks, in its order, to a long frame whose
/// payload after the head was `payload_left` bytes.
fn finish_long_frame<const I: usize, const H1: usize, const H2: usize>(
    head: LongHead<I>,
    payload_left: usize,
    params_len: usize,
    params: &Params<I, H1, H2>,
) -> Result<Frame<I>, DecodeError> {
    if payload_left < params_len {
        return Err(DecodeError::Malformed);
    }
    if let Some(index) = params.first_non_finite() {
        return Err(DecodeError::NonFinite { index });
    }
    if payload_left > params_len {
        return Err(DecodeError::Malformed);
    }
    let LongHead {
        header,
        leading,
        standardization,
    } = head;
    match (header.kind, standardization) {
        // `leading` came from a u16 for these kinds.
        (FrameKind::Train, _) => Ok(Frame::Train {
            header,
            epochs: leading as u16,
        }),
        (FrameKind::Evaluate, _) => Ok(Frame::Evaluate { header }),
        (FrameKind::Update, _) => {
            if leading == 0 {
                return Err(DecodeError::NoRows);
            }
            Ok(Frame::Update {
                header,
                rows: leading,
            })
        }
        (FrameKind::Model, Some(standardization)) => {
            if let Some(index) = standardization.first_invalid() {
                return Err(DecodeError::OutOfRange { index });
            }
            if leading == 0 || leading as usize > I {
                return Err(DecodeError::FeatureCount {
                    features: leading as u16,
                    inputs: I,
                });
            }
            Ok(Frame::Model {
                header,
                features: leading as u16,
                standardization,
            })
        }
        _ => Err(DecodeError::Malformed),
    }
}

/// Sends a parameter frame to `sink` in pieces of at most 256 bytes,
/// computing its checksum on the way, and returns its length.
fn write_params_frame<W: Sink, const I: usize, const H1: usize, const H2: usize>(
    sink: &mut W,
    header: &Header,
    leading: Option<u32>,
    params: &Params<I, H1, H2>,
) -> Result<usize, WriteError<W::Error>> {
    if let Some(index) = params.first_non_finite() {
        return Err(WriteError::Encode(EncodeError::NonFinite { index }));
    }
    const CHUNK: usize = 256;
    let mut chunk = [0u8; CHUNK];
    let too_small = |_| WriteError::Encode(EncodeError::BufferTooSmall { available: CHUNK });
    let (prefix, body) = chunk.split_at_mut(MAX_PREFIX_LEN);
    let mut head_len = postcard::to_slice(header, body).map_err(too_small)?.len();
    if let Some(value) = leading {
        head_len += postcard::to_slice(&value, &mut body[head_len..])
            .map_err(too_small)?
            .len();
    }
    let params_len = Params::<I, H1, H2>::COUNT * 4;
    let body_len = head_len + params_len;
    let prefix_len = postcard::to_slice(&(body_len as u32), prefix)
        .map_err(too_small)?
        .len();
    let start = MAX_PREFIX_LEN - prefix_len;
    chunk.copy_within(..prefix_len, start);

    let mut hasher = crc32fast::Hasher::new();
    let mut send = |bytes: &[u8]| {
        hasher.update(bytes);
        sink.write_all(bytes).map_err(WriteError::Io)
    };
    send(&chunk[start..MAX_PREFIX_LEN + head_len])?;
    let mut used = 0;
    for value in params.iter() {
        if used == CHUNK {
            send(&chunk)?;
            used = 0;
        }
        chunk[used..used + 4].copy_from_slice(&value.to_le_bytes());
        used += 4;
    }
    send(&chunk[..used])?;
    let crc = hasher.finalize();
    sink.write_all(&crc.to_le_bytes()).map_err(WriteError::Io)?;
    Ok(prefix_len + body_len + CRC_LEN)
}

/// Sends the frame [`encode_train`] would encode to `sink` without a
/// frame buffer, and returns its length.
pub fn write_train<W: Sink, const I: usize, const H1: usize, const H2: usize>(
    sink: &mut W,
    round: u32,
    client: u32,
    epochs: u16,
    params: &Params<I, H1, H2>,
) -> Result<usize, WriteError<W::Error>> {
    let header = Header::new::<I, H1, H2>(FrameKind::Train, round, client);
    write_params_frame(sink, &header, Some(u32::from(epochs)), params)
}

/// Sends the frame [`encode_evaluate`] would encode to `sink` without a
/// frame buffer, and returns its length.
pub fn write_evaluate<W: Sink, const I: usize, const H1: usize, const H2: usize>(
    sink: &mut W,
    round: u32,
    client: u32,
    params: &Params<I, H1, H2>,
) -> Result<usize, WriteError<W::Error>> {
    let header = Header::new::<I, H1, H2>(FrameKind::Evaluate, round, client);
    write_params_frame(sink, &header, None, params)
}

/// Sends the frame [`encode_update`] would encode to `sink` without a
/// frame buffer, and returns its length.
pub fn write_update<W: Sink, const I: usize, const H1: usize, const H2: usize>(
    sink: &mut W,
    round: u32,
    client: u32,
    rows: u32,
    params: &Params<I, H1, H2>,
) -> Result<usize, WriteError<W::Error>> {
    if rows == 0 {
        return Err(WriteError::Encode(EncodeError::NoRows));
    }
    let header = Header::new::<I, H1, H2>(FrameKind::Update, round, client);
    write_params_frame(sink, &header, Some(rows), params)
}
