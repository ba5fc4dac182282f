//! The federation's server: it sends frames to devices, checks their
//! replies and averages updates with fedcore's exact FedAvg.

use fedcore::wire::{self, FeatureStats, Frame, Standardization};
use fedcore::{FedAvg, Metrics, Params};

use crate::device::{Device, DeviceError};
use crate::preprocess::{self, StandardizeError};
use crate::{HIDDEN1, HIDDEN2};

/// Why a device's reply was not used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplyError {
    /// The device failed to reply.
    #[error("no reply: {0}")]
    Device(String),
    /// The device's training diverged, so it has no update to send.
    #[error("{0}")]
    Diverged(String),
    /// The reply frame was rejected by the decoder.
    #[error("reply rejected: {0}")]
    Decode(#[from] wire::DecodeError),
    /// The reply decoded but is not the answer to the request.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// FedAvg rejected the update.
    #[error("update rejected: {0}")]
    Aggregate(#[from] fedcore::AggregateError),
}

/// Why the federation could not be set up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetupError {
    /// A hospital did not send its feature statistics.
    #[error("{hospital} did not send its feature statistics: {source}")]
    Stats {
        /// The hospital's name.
        hospital: String,
        /// What went wrong.
        source: ReplyError,
    },
    /// The pooled statistics cannot standardise a feature.
    #[error(transparent)]
    Standardize(#[from] StandardizeError),
}

/// What happened to one hospital in a training round.
#[derive(Debug, Clone, PartialEq)]
pub enum Participation {
    /// Offline this round; no frame was sent.
    Offline,
    /// Its update was averaged in, trained on this many rows.
    Averaged {
        /// Training rows.
        rows: u32,
    },
    /// It was asked but its reply was not used.
    Failed(String),
    /// Its training diverged to NaN or infinity, so it sent no update.
    Diverged(String),
}

/// The outcome of one training round.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundOutcome {
    /// Round number, from 1.
    pub round: u32,
    /// One entry per hospital, in hospital order.
    pub participation: Vec<Participation>,
    /// True when no update was averaged and the previous model was kept.
    pub kept_previous: bool,
}

/// A server with its devices and the current global model.
pub struct Server<const INPUTS: usize> {
    features: usize,
    devices: Vec<Box<dyn Device>>,
    global: Box<Params<INPUTS, HIDDEN1, HIDDEN2>>,
    fedavg: Box<FedAvg<INPUTS, HIDDEN1, HIDDEN2>>,
    scratch: Box<Params<INPUTS, HIDDEN1, HIDDEN2>>,
    buffer: Vec<u8>,
}

impl<const INPUTS: usize> Server<INPUTS> {
    /// Creates a server whose first global model is `initial`, for rows of
    /// `features` features; model inputs past them are zero padding.
    pub fn new(
        devices: Vec<Box<dyn Device>>,
        features: usize,
        initial: Params<INPUTS, HIDDEN1, HIDDEN2>,
    ) -> Self {
        Self {
            features,
            devices,
            global: Box::new(initial),
            fedavg: Box::new(FedAvg::new()),
            scratch: Box::new(Params::zeros()),
            buffer: vec![0; wire::frame_capacity::<INPUTS, HIDDEN1, HIDDEN2>()],
        }
    }

    /// The hospitals' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.devices
            .iter()
            .map(|device| device.name().to_owned())
            .collect()
    }

    /// The current global model.
    pub fn global(&self) -> &Params<INPUTS, HIDDEN1, HIDDEN2> {
        &self.global
    }

    fn client_id(index: usize) -> u32 {
        // Hospital counts are far below u32::MAX; ids start at 1 so that 0
        // never names a hospital.
        (index + 1) as u32
    }

    fn send(&mut self, index: usize, length: usize) -> Result<Frame<INPUTS>, ReplyError> {
        let reply = self.devices[index]
            .exchange(&self.buffer[..length])
            .map_err(|error| match error {
                DeviceError::Diverged(_) => ReplyError::Diverged(error.to_string()),
                other => ReplyError::Device(other.to_string()),
            })?;
        let frame = wire::decode(&reply, &mut self.scratch)?;
        tracing::debug!(
            hospital = self.devices[index].name(),
            request_bytes = length,
            reply_bytes = reply.len(),
            reply = %frame.header().kind,
            "frame exchanged"
        );
        let client = frame.header().client;
        if client != Self::client_id(index) {
            return Err(ReplyError::Unexpected(format!(
                "reply names client {client}, expected {}",
                Self::client_id(index)
            )));
        }
        Ok(frame)
    }

    /// Collects every hospital's feature statistics, pools them and sends
    /// the resulting standardisation to every hospital. Returns the
    /// standardisation and each hospital's statistics.
    pub fn standardize(
        &mut self,
    ) -> Result<(Standardization<INPUTS>, Vec<FeatureStats<INPUTS>>), SetupError> {
        let mut per_hospital = Vec::with_capacity(self.devices.len());
        let mut total = FeatureStats::<INPUTS>::default();
        for index in 0..self.devices.len() {
            let stats = self
                .request_stats(index)
                .map_err(|source| SetupError::Stats {
                    hospital: self.devices[index].name().to_owned(),
                    source,
                })?;
            preprocess::add_stats(&mut total, &stats);
            per_hospital.push(stats);
        }
        let standardization = preprocess::standardization(&total, self.features)?;
        for index in 0..self.devices.len() {
            self.send_standardization(index, &standardization)
                .map_err(|source| SetupError::Stats {
                    hospital: self.devices[index].name().to_owned(),
                    source,
                })?;
        }
        Ok((standardization, per_hospital))
    }

    fn request_stats(&mut self, index: usize) -> Result<FeatureStats<INPUTS>, ReplyError> {
        let client = Self::client_id(index);
        let length =
            wire::encode_stats_request::<INPUTS, HIDDEN1, HIDDEN2>(&mut self.buffer, client)
                .map_err(|error| ReplyError::Unexpected(error.to_string()))?;
        match self.send(index, length)? {
            Frame::FeatureStats { stats, .. } => Ok(stats),
            other => Err(unexpected_kind("feature-stats", &other)),
        }
    }

    /// Sends the standardisation to one hospital.
    pub fn send_standardization(
        &mut self,
        index: usize,
        standardization: &Standardization<INPUTS>,
    ) -> Result<(), ReplyError> {
        let client = Self::client_id(index);
        let length = wire::encode_standardize::<INPUTS, HIDDEN1, HIDDEN2>(
            &mut self.buffer,
            client,
            standardization,
        )
        .map_err(|error| ReplyError::Unexpected(error.to_string()))?;
        match self.send(index, length)? {
            Frame::FeatureStats { .. } => Ok(()),
            other => Err(unexpected_kind("feature-stats", &other)),
        }
    }

    /// Sends `params` to hospital `index` to train for `epochs` epochs and
    /// returns its update: the training rows and the trained parameters.
    pub fn train_on(
        &mut self,
        index: usize,
        round: u32,
        epochs: u16,
        params: &Params<INPUTS, HIDDEN1, HIDDEN2>,
    ) -> Result<(u32, Params<INPUTS, HIDDEN1, HIDDEN2>), ReplyError> {
        let length = wire::encode_train(
            &mut self.buffer,
            round,
            Self::client_id(index),
            epochs,
            params,
        )
        .map_err(|error| ReplyError::Unexpected(error.to_string()))?;
        match self.send(index, length)? {
            Frame::Update { header, rows } if header.round == round => Ok((rows, *self.scratch)),
            Frame::Update { header, .. } => Err(ReplyError::Unexpected(format!(
                "update for round {}, expected round {round}",
                header.round
            ))),
            other => Err(unexpected_kind("update", &other)),
        }
    }

    /// Asks hospital `index` to evaluate `params` on its test rows.
    pub fn evaluate_on(
        &mut self,
        index: usize,
        round: u32,
        params: &Params<INPUTS, HIDDEN1, HIDDEN2>,
    ) -> Result<Metrics, ReplyError> {
        let length = wire::encode_evaluate(&mut self.buffer, round, Self::client_id(index), params)
            .map_err(|error| ReplyError::Unexpected(error.to_string()))?;
        match self.send(index, length)? {
            Frame::Metrics { metrics, .. } => Ok(metrics),
            other => Err(unexpected_kind("metrics", &other)),
        }
    }

    /// Runs one federated round: every online hospital trains the global
    /// model for `epochs` epochs, and the accepted updates are averaged
    /// weighted by training rows. When no update is accepted, the previous
    /// global model stays and the outcome records it.
    pub fn train_round(&mut self, round: u32, epochs: u16, online: &[bool]) -> RoundOutcome {
        self.fedavg.reset();
        let global = *self.global;
        let mut participation = Vec::with_capacity(self.devices.len());
        for index in 0..self.devices.len() {
            if !online.get(index).copied().unwrap_or(true) {
                participation.push(Participation::Offline);
                continue;
            }
            let result = self
                .train_on(index, round, epochs, &global)
                .and_then(|(rows, params)| {
                    let fingerprint = Params::<INPUTS, HIDDEN1, HIDDEN2>::fingerprint();
                    self.fedavg.add(fingerprint, rows, &params)?;
                    Ok(rows)
                });
            if let Err(error) = &result {
                tracing::warn!(
                    hospital = self.devices[index].name(),
                    round,
                    "update left out of the round: {error}"
                );
            }
            participation.push(match result {
                Ok(rows) => Participation::Averaged { rows },
                Err(error @ ReplyError::Diverged(_)) => Participation::Diverged(error.to_string()),
                Err(error) => Participation::Failed(error.to_string()),
            });
        }
        let kept_previous = self.fedavg.finish(&mut self.global).is_err();
        if kept_previous {
            tracing::warn!(
                round,
                "no update arrived, so the previous global model was kept"
            );
        }
        RoundOutcome {
            round,
            participation,
            kept_previous,
        }
    }

    /// Evaluates the global model at every hospital.
    pub fn evaluate_all(&mut self, round: u32) -> Vec<Result<Metrics, ReplyError>> {
        let global = *self.global;
        (0..self.devices.len())
            .map(|index| self.evaluate_on(index, round, &global))
            .collect()
    }

    /// Number of hospitals.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when the server has no hospital.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

fn unexpected_kind<const INPUTS: usize>(expected: &str, frame: &Frame<INPUTS>) -> ReplyError {
    ReplyError::Unexpected(format!(
        "{} frame where a {expected} frame was expected",
        frame.header().kind
    ))
}
