#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! fedcore: federated learning for sites that may not share raw records.
//!
//! Crate docs to be written with the architecture walk.

pub mod adam;
pub mod fedavg;
pub mod model;
pub mod params;
pub mod rng;
pub mod train;
pub mod wire;

pub use adam::{Adam, AdamConfig};
pub use fedavg::{AggregateError, AggregateSummary, FedAvg};
pub use params::{Fingerprint, Layers, Params};
pub use train::{Dataset, DatasetError, Metrics, MomentPolicy, TrainConfig, Trainer};
