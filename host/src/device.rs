//! A hospital as a device that exchanges only frames.
//!
//! [`Hospital`] owns its rows and exposes nothing but [`Device::exchange`]:
//! bytes of one request frame in, bytes of one reply frame out. The server
//! holds hospitals as `Box<dyn Device>`, so no code path can hand it a row.

use fedcore::train::{self, Dataset, Trainer};
use fedcore::wire::{self, DecodeError, EncodeError, Frame, Standardization};
use fedcore::{Params, TrainConfig};

use crate::data::HospitalData;
use crate::preprocess::{self, PreparedRows};
use crate::{HIDDEN1, HIDDEN2};

/// A site reachable only through frames.
pub trait Device {
    /// The site's display name.
    fn name(&self) -> &str;

    /// Sends one request frame and returns the reply frame.
    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, DeviceError>;
}

/// Why a device produced no reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceError {
    /// The request frame was rejected.
    #[error("request rejected: {0}")]
    Decode(#[from] DecodeError),
    /// The reply could not be encoded.
    #[error("reply could not be encoded: {0}")]
    Encode(#[from] EncodeError),
    /// The request is valid but cannot be served in the device's state.
    #[error("{0}")]
    State(String),
    /// Training made the parameters NaN or infinite.
    #[error("training diverged at {0}: its parameters became NaN or infinite")]
    Diverged(String),
}

/// One simulated hospital: its raw rows, its prepared rows once the
/// federation's standardisation has arrived, and its training state.
pub struct Hospital<const INPUTS: usize> {
    id: u32,
    data: HospitalData,
    prepared: Option<(PreparedRows<INPUTS>, PreparedRows<INPUTS>)>,
    trainer: Trainer<INPUTS, HIDDEN1, HIDDEN2>,
    order: Vec<u32>,
    scratch: Box<Params<INPUTS, HIDDEN1, HIDDEN2>>,
    buffer: Vec<u8>,
}

impl<const INPUTS: usize> Hospital<INPUTS> {
    /// Creates hospital `id` with its rows. Training uses `config` and the
    /// dropout and shuffle streams of `seed` for this `id`.
    pub fn new(
        id: u32,
        data: HospitalData,
        config: TrainConfig,
        seed: u64,
    ) -> Result<Self, fedcore::train::ConfigError> {
        let trainer = Trainer::new(config, Params::zeros(), seed, id)?;
        let order = vec![0; data.train.len()];
        Ok(Self {
            id,
            data,
            prepared: None,
            trainer,
            order,
            scratch: Box::new(Params::zeros()),
            buffer: vec![0; wire::frame_capacity::<INPUTS, HIDDEN1, HIDDEN2>()],
        })
    }

    fn prepared(&self) -> Result<&(PreparedRows<INPUTS>, PreparedRows<INPUTS>), DeviceError> {
        self.prepared.as_ref().ok_or_else(|| {
            DeviceError::State(format!(
                "{} has not received the federation's standardisation yet",
                self.data.name
            ))
        })
    }

    fn dataset<'a>(
        &self,
        rows: &'a PreparedRows<INPUTS>,
    ) -> Result<Dataset<'a, INPUTS>, DeviceError> {
        Dataset::new(&rows.features, &rows.labels)
            .map_err(|error| DeviceError::State(format!("{}: {error}", self.data.name)))
    }

    fn standardize(&mut self, standardization: &Standardization<INPUTS>) {
        let train = preprocess::prepare(&self.data.train, standardization);
        let test = preprocess::prepare(&self.data.test, standardization);
        self.prepared = Some((train, test));
    }

    fn reply(&mut self, frame: &Frame<INPUTS>) -> Result<usize, DeviceError> {
        let round = frame.header().round;
        let id = self.id;
        let length = match *frame {
            Frame::StatsRequest { .. } => {
                let stats = preprocess::feature_stats::<INPUTS>(&self.data.train);
                wire::encode_feature_stats::<INPUTS, HIDDEN1, HIDDEN2>(
                    &mut self.buffer,
                    id,
                    &stats,
                )?
            }
            Frame::Standardize {
                standardization, ..
            } => {
                self.standardize(&standardization);
                // The acknowledgement reports the training rows' statistics
                // after standardisation, which the server may ignore.
                let stats = prepared_stats(&self.prepared()?.0);
                wire::encode_feature_stats::<INPUTS, HIDDEN1, HIDDEN2>(
                    &mut self.buffer,
                    id,
                    &stats,
                )?
            }
            Frame::Train { epochs, .. } => {
                self.trainer.load_global(&self.scratch);
                let prepared = self.prepared.take();
                let result = self.train(prepared.as_ref(), epochs);
                self.prepared = prepared;
                let rows = result?;
                let params = *self.trainer.params();
                if params.first_non_finite().is_some() {
                    return Err(DeviceError::Diverged(self.data.name.clone()));
                }
                wire::encode_update(&mut self.buffer, round, id, rows, &params)?
            }
            Frame::Evaluate { .. } => {
                let (_, test) = self.prepared()?;
                let metrics = train::evaluate(&self.scratch, &self.dataset(test)?);
                wire::encode_metrics::<INPUTS, HIDDEN1, HIDDEN2>(
                    &mut self.buffer,
                    round,
                    id,
                    &metrics,
                )?
            }
            Frame::Update { .. }
            | Frame::Metrics { .. }
            | Frame::FeatureStats { .. }
            | Frame::Model { .. } => {
                return Err(DeviceError::State(format!(
                    "{} received a {} frame, which only a server accepts",
                    self.data.name,
                    frame.header().kind
                )));
            }
        };
        Ok(length)
    }

    fn train(
        &mut self,
        prepared: Option<&(PreparedRows<INPUTS>, PreparedRows<INPUTS>)>,
        epochs: u16,
    ) -> Result<u32, DeviceError> {
        let (train_rows, _) = prepared.ok_or_else(|| {
            DeviceError::State(format!(
                "{} has not received the federation's standardisation yet",
                self.data.name
            ))
        })?;
        let data = self.dataset(train_rows)?;
        for _ in 0..epochs {
            self.trainer
                .train_epoch(&data, &mut self.order)
                .map_err(|error| DeviceError::State(error.to_string()))?;
        }
        Ok(data.rows())
    }
}

/// Computes the statistics of prepared rows, which a hospital sends back
/// to acknowledge the standardisation. Merged over all hospitals, every
/// feature then has mean 0 and, unless it is constant, variance close to 1.
fn prepared_stats<const INPUTS: usize>(rows: &PreparedRows<INPUTS>) -> wire::FeatureStats<INPUTS> {
    let mut stats = wire::FeatureStats::<INPUTS>::default();
    for row in &rows.features {
        for (column, &value) in row.iter().enumerate() {
            stats.add_value(column, f64::from(value));
        }
    }
    stats
}

impl<const INPUTS: usize> Device for Hospital<INPUTS> {
    fn name(&self) -> &str {
        &self.data.name
    }

    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, DeviceError> {
        // Parameters go to a scratch buffer first, so a bad frame cannot
        // damage the hospital's trained state.
        let frame = wire::decode(request, &mut self.scratch)?;
        let length = self.reply(&frame)?;
        Ok(self.buffer[..length].to_vec())
    }
}
