//! The fedcore host: hospitals simulated as devices that exchange only
//! fedcore frames, a federated server, and the `compare` job with its
//! report.

pub mod compare;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod json;
pub mod parallel;
pub mod plot;
pub mod preprocess;
pub mod qemu;
pub mod report;
pub mod server;

/// Units of the first hidden layer, fixed for every feature count.
pub const HIDDEN1: usize = 64;
/// Units of the second hidden layer, fixed for every feature count.
pub const HIDDEN2: usize = 32;
