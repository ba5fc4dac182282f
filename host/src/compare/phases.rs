//! The comparison's training phases as jobs that can run side by side.
//!
//! The federated phase runs on the calling thread, because its devices may
//! be QEMU processes that cannot move between threads. The isolated
//! training of each hospital, the centralized baseline and the
//! client-dropout phase are jobs for [`parallel::run_in_order`]: each
//! builds its own devices, so none shares state with another. Isolated
//! training is split into a few jobs of consecutive hospitals.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use std::num::NonZeroUsize;

use fedcore::wire::Standardization;
use fedcore::Metrics;

use super::{
    centralized, check_diverged, evaluate_round, federation, round_line, uniform, CompareConfig,
    CompareError, Model, RoundRecord, OFFLINE_STREAM,
};
use crate::data::Source;
use crate::parallel;
use crate::server::{ReplyError, Server};

/// A phase that runs after the federated one's set-up, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Job {
    /// Each hospital from index `first` up to, not including, `end` trains
    /// alone.
    Isolated {
        /// Index of the first hospital.
        first: usize,
        /// Index past the last hospital.
        end: usize,
    },
    /// One model trains on every hospital's training rows pooled.
    Centralized,
    /// Federated rounds in which hospitals go offline at random.
    Dropout,
}

/// The result of a [`Job`].
pub(super) enum JobResult {
    /// Each hospital's own model at its test rows, or `None` where the
    /// hospital failed without diverging.
    Isolated(Vec<Option<Metrics>>),
    /// The centralized model at each hospital's test rows.
    Centralized(Vec<Metrics>),
    /// The client-dropout rounds.
    Dropout(Vec<RoundRecord>),
}

/// The inputs that every phase shares.
pub(super) struct Phases<'a, const INPUTS: usize> {
    pub source: &'a Source,
    pub config: &'a CompareConfig,
    pub initial: &'a Model<INPUTS>,
    /// The federation's standardisation, from the federated phase's set-up.
    pub standardization: &'a Standardization<INPUTS>,
    pub names: &'a [String],
}

impl<const INPUTS: usize> Phases<'_, INPUTS> {
    /// Returns the jobs of the phases after the federated one, in the order
    /// a sequential run performs them. Isolated training becomes up to
    /// twice `threads` jobs, because every job sets up a federation of all
    /// the hospitals. With one job for each of 64 hospitals, those set-ups
    /// took about a fifth of a one-thread run.
    pub fn jobs(&self, threads: NonZeroUsize) -> Vec<Job> {
        let hospitals = self.names.len();
        let chunks = if threads.get() == 1 {
            1
        } else {
            hospitals.min(2 * threads.get())
        };
        let mut jobs: Vec<Job> = (0..chunks)
            .map(|chunk| Job::Isolated {
                first: chunk * hospitals / chunks,
                end: (chunk + 1) * hospitals / chunks,
            })
            .collect();
        jobs.push(Job::Centralized);
        jobs.push(Job::Dropout);
        jobs
    }

    /// Estimates the rows that `job` trains on, counted once per epoch,
    /// which is what its running time mostly depends on.
    pub fn estimated_rows(&self, job: &Job) -> u64 {
        let hospitals = &self.source.hospitals;
        let pooled: usize = hospitals.iter().map(|hospital| hospital.train.len()).sum();
        let config = self.config;
        let rows = match *job {
            Job::Isolated { first, end } => {
                let rows: usize = hospitals[first..end]
                    .iter()
                    .map(|hospital| hospital.train.len())
                    .sum();
                rows as f64 * f64::from(config.baseline_epochs)
            }
            Job::Centralized => pooled as f64 * f64::from(config.baseline_epochs),
            Job::Dropout => {
                pooled as f64
                    * f64::from(config.dropout_rounds)
                    * f64::from(config.dropout_local_epochs)
                    * (1.0 - config.offline_probability)
            }
        };
        rows as u64
    }

    /// Runs `job` and sends its progress lines to `progress`.
    pub fn run(
        &self,
        job: &Job,
        progress: &mut dyn FnMut(&str),
    ) -> Result<JobResult, CompareError> {
        match *job {
            Job::Isolated { first, end } => {
                self.isolated(first, end, progress).map(JobResult::Isolated)
            }
            Job::Centralized => {
                let metrics = centralized::<INPUTS>(
                    self.source,
                    self.config,
                    self.initial,
                    self.standardization,
                )?;
                progress(&format!(
                    "centralized: trained {} epochs on pooled rows",
                    self.config.baseline_epochs
                ));
                Ok(JobResult::Centralized(metrics))
            }
            Job::Dropout => self.dropout(progress).map(JobResult::Dropout),
        }
    }

    /// Runs the federated rounds on `server`, every hospital online.
    pub fn federated(
        &self,
        server: &mut Server<INPUTS>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Vec<RoundRecord>, CompareError> {
        let config = self.config;
        let mut rounds = Vec::new();
        for round in 1..=config.rounds {
            let online = vec![true; server.len()];
            let outcome = server.train_round(round, config.local_epochs, &online);
            let record = evaluate_round(server, outcome);
            progress(&round_line("federated", config.rounds, &record, self.names));
            check_diverged("federated", &record, self.names, config)?;
            rounds.push(record);
        }
        Ok(rounds)
    }

    /// Trains each hospital from `first` up to `end` alone from the initial
    /// model and evaluates it. The job that ends with the last hospital
    /// also reports the whole phase.
    fn isolated(
        &self,
        first: usize,
        end: usize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Vec<Option<Metrics>>, CompareError> {
        let config = self.config;
        let set_up = || federation::<INPUTS>(self.source, config, self.initial);
        // Every job sets up a federation of its own, but only the first
        // one's frames are logged, so that the log shows one set-up for the
        // phase at any thread count.
        let (mut server, _, _) = if first == 0 {
            set_up()?
        } else {
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), set_up)?
        };
        let mut results = Vec::with_capacity(end - first);
        for index in first..end {
            let name = &self.names[index];
            let result = server
                .train_on(index, 0, config.baseline_epochs, self.initial)
                .and_then(|(_, params)| server.evaluate_on(index, 0, &params));
            match result {
                Ok(metrics) => results.push(Some(metrics)),
                Err(ReplyError::Diverged(_)) => {
                    return Err(CompareError::Diverged {
                        phase: "isolated",
                        site: name.clone(),
                        learning_rate: config.train.adam.learning_rate,
                    });
                }
                Err(error) => {
                    progress(&format!("isolated: {name} failed: {error}"));
                    results.push(None);
                }
            }
        }
        if end == self.names.len() {
            progress(&format!(
                "isolated: {} hospitals trained {} epochs each",
                self.names.len(),
                config.baseline_epochs
            ));
        }
        Ok(results)
    }

    /// Runs the client-dropout rounds on a federation of its own.
    fn dropout(&self, progress: &mut dyn FnMut(&str)) -> Result<Vec<RoundRecord>, CompareError> {
        let config = self.config;
        let (mut server, _, _) = federation::<INPUTS>(self.source, config, self.initial)?;
        let mut offline_rng = ChaCha8Rng::seed_from_u64(config.seed);
        offline_rng.set_stream(OFFLINE_STREAM);
        let mut rounds = Vec::new();
        for round in 1..=config.dropout_rounds {
            let online: Vec<bool> = (0..server.len())
                .map(|_| uniform(&mut offline_rng) >= config.offline_probability)
                .collect();
            let outcome = server.train_round(round, config.dropout_local_epochs, &online);
            let record = evaluate_round(&mut server, outcome);
            progress(&round_line(
                "client dropout",
                config.dropout_rounds,
                &record,
                self.names,
            ));
            check_diverged("client-dropout", &record, self.names, config)?;
            rounds.push(record);
        }
        Ok(rounds)
    }

    /// Runs the federated rounds on `server` and every other phase as a
    /// job, on up to `threads` threads, and returns the federated rounds
    /// and the job results in job order.
    pub fn run_all(
        &self,
        server: &mut Server<INPUTS>,
        threads: NonZeroUsize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(Vec<RoundRecord>, Vec<JobResult>), CompareError> {
        parallel::run_in_order(
            threads,
            |progress| self.federated(server, progress),
            &self.jobs(threads),
            |job| self.estimated_rows(job),
            |job, progress| self.run(job, progress),
            progress,
        )
    }
}
