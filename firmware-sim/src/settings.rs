//! Training settings from the semihosting command line.
//!
//! The host starts QEMU with `serve` followed by one `key=value` argument
//! per setting, every one required, so that the device trains exactly as
//! the host's in-process hospital with the same settings would:
//!
//! | key | value |
//! |---|---|
//! | `seed` | run seed, `u64` |
//! | `client` | client id, `u32`; the server numbers hospitals from 1 |
//! | `batch-size` | rows per mini-batch |
//! | `dropout` | dropout rate, `f32` |
//! | `learning-rate`, `beta1`, `beta2`, `epsilon` | Adam's settings, `f64` |
//! | `moments` | `keep` or `reset` |
//!
//! Floats are decimal. Rust prints the shortest decimal that parses back
//! to the same value, and parses correctly rounded, so a host that formats
//! them with `{}` passes the exact bits.

use core::fmt;

use fedcore::{AdamConfig, MomentPolicy, TrainConfig};

/// Settings the device needs to train like the in-process hospital.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Seed of the dropout and shuffle streams.
    pub seed: u64,
    /// The client id this hospital sends in its replies.
    pub client: u32,
    /// Training hyperparameters.
    pub train: TrainConfig,
}

/// A missing, repeated, unknown or invalid setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsError<'a> {
    /// An argument is not `key=value`.
    NotKeyValue(&'a str),
    /// The key is not a setting.
    UnknownKey(&'a str),
    /// The key appears twice.
    Repeated(&'a str),
    /// The value does not parse.
    InvalidValue {
        /// The setting.
        key: &'a str,
        /// The text given.
        value: &'a str,
    },
    /// A required setting is missing.
    Missing(&'static str),
}

impl fmt::Display for SettingsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotKeyValue(arg) => write!(f, "argument {arg:?} is not key=value"),
            Self::UnknownKey(key) => write!(
                f,
                "unknown setting {key:?}; use seed, client, batch-size, dropout, learning-rate, beta1, beta2, epsilon or moments"
            ),
            Self::Repeated(key) => write!(f, "setting {key:?} is given twice"),
            Self::InvalidValue { key, value } => {
                write!(f, "setting {key}={value:?} is invalid")
            }
            Self::Missing(key) => write!(f, "setting {key} is missing; the host passes every setting"),
        }
    }
}

const KEYS: [&str; 9] = [
    "seed",
    "client",
    "batch-size",
    "dropout",
    "learning-rate",
    "beta1",
    "beta2",
    "epsilon",
    "moments",
];

/// Parses the arguments after `serve`.
pub fn parse<'a>(args: impl Iterator<Item = &'a str>) -> Result<Settings, SettingsError<'a>> {
    let mut values: [Option<&'a str>; KEYS.len()] = [None; KEYS.len()];
    for arg in args.filter(|arg| !arg.is_empty()) {
        let (key, value) = arg.split_once('=').ok_or(SettingsError::NotKeyValue(arg))?;
        let slot = KEYS
            .iter()
            .position(|&known| known == key)
            .ok_or(SettingsError::UnknownKey(key))?;
        if values[slot].replace(value).is_some() {
            return Err(SettingsError::Repeated(key));
        }
    }

    let mut fields = KEYS.iter().zip(values);
    let mut next = || {
        let (&key, value) = fields.next().expect("one value per key");
        value
            .map(|value| (key, value))
            .ok_or(SettingsError::Missing(key))
    };
    let seed = number(next()?)?;
    let client = number(next()?)?;
    let batch_size = number(next()?)?;
    let dropout = number(next()?)?;
    let learning_rate = number(next()?)?;
    let beta1 = number(next()?)?;
    let beta2 = number(next()?)?;
    let epsilon = number(next()?)?;
    let moments = match next()? {
        (_, "keep") => MomentPolicy::Keep,
        (_, "reset") => MomentPolicy::Reset,
        (key, value) => return Err(SettingsError::InvalidValue { key, value }),
    };
    Ok(Settings {
        seed,
        client,
        train: TrainConfig {
            batch_size,
            dropout,
            adam: AdamConfig {
                learning_rate,
                beta1,
                beta2,
                epsilon,
            },
            moments,
        },
    })
}

fn number<'a, T: core::str::FromStr>(
    (key, value): (&'a str, &'a str),
) -> Result<T, SettingsError<'a>> {
    value
        .parse()
        .map_err(|_| SettingsError::InvalidValue { key, value })
}
