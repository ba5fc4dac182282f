//! fedcore: federated learning for sites that may not share raw records.
//!
//! Hospitals, or any sites bound to keep their rows, train one model
//! together: each trains on its own rows, only model updates travel, and a
//! server averages them. fedcore is the part that runs everywhere, from a
//! hospital server down to a microcontroller: `#![no_std]`, no heap, no
//! `unsafe`, and the same bits on every target.
//!
//! # Architecture, in the order data flows
//!
//! 1. **Parameters** ([`params`]). [`Layers`] contains one value per parameter
//!    of an `INPUTS → HIDDEN1 → HIDDEN2 → 1` network in fixed-size arrays,
//!    with the widths as const generics. [`Params`] is its `f32` form: the
//!    weights, the gradients and Adam's moments. The default
//!    20 → 64 → 32 → 1 network has 3,457 parameters, 13,828 bytes.
//! 2. **Model** ([`model`]). Glorot-uniform initialisation, hand-written
//!    forward and backward passes (ReLU, inverted dropout in training only,
//!    sigmoid output) and binary cross-entropy computed from the logit, so
//!    that it stays finite for any finite logit.
//! 3. **Training** ([`train`], [`adam`]). A [`Trainer`] runs seeded,
//!    shuffled mini-batches and one Adam step per batch, with Keras'
//!    defaults. Gradients are accumulated sample by sample, so memory does
//!    not grow with the batch size. For the default network a trainer is
//!    `size_of::<Trainer<20, 64, 32>>()` = 56,016 bytes on a 64-bit host:
//!    parameters, gradients and two moments (4 × 13,828 bytes) plus two
//!    ChaCha8 generators. One sample's activations add 388 bytes of stack.
//!    A test holds the sum under 64 KiB.
//! 4. **Averaging** ([`fedavg`]). [`FedAvg`] takes one update at a time,
//!    weighted by its training rows, in an exact fixed-point accumulator,
//!    so any arrival order gives the same bits. It rejects NaN, infinity,
//!    a model mismatch, zero rows and a row total past `u32::MAX`, and
//!    leaves the aggregate unchanged when it does. Its accumulator takes 96
//!    bytes per parameter (331,896 bytes for the default network), which
//!    suits a server or gateway rather than a small device.
//!    [`average_updates`] averages updates that are all in memory in one
//!    pass, with the same bits and without that accumulator.
//! 5. **Wire format** ([`wire`]). Requests, updates, metrics and
//!    standardisation statistics travel as postcard frames with a length
//!    prefix, a version, the model's fingerprint and a CRC-32. Decoding
//!    checks everything once and returns a typed [`wire::DecodeError`];
//!    past it, the fixed-size math cannot fail. An update of the default
//!    network trained on 800 rows is a 13,843-byte frame.
//!
//! # Reproducibility
//!
//! Every random draw comes from a ChaCha8 stream named by seed, purpose
//! and client ([`rng`]). Every sum runs in an order fixed by the code and
//! no multiply-add is fused. Transcendental functions come from `libm`,
//! which is software and so gives the same bits everywhere; the square
//! root is correctly rounded on every target. A host and a
//! microcontroller given the same seed therefore compute the same
//! updates, bit for bit.
//!
//! # Features
//!
//! - `std`: lets the square root use the standard library, which
//!   vectorises on the host, and lets the frame checksum pick carry-less
//!   multiplication at run time where the processor has it. Results do not
//!   change.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod adam;
pub mod fedavg;
mod math;
pub mod model;
pub mod params;
pub mod rng;
pub mod stats;
pub mod train;
pub mod wire;

pub use adam::{Adam, AdamConfig};
pub use fedavg::{average_updates, AggregateError, AggregateSummary, BatchError, FedAvg};
pub use params::{Fingerprint, Layers, Params};
pub use train::{Dataset, DatasetError, Metrics, MomentPolicy, Samples, TrainConfig, Trainer};
