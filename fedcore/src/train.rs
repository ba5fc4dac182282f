//! Mini-batch training and evaluation.
//!
//! A [`Trainer`] owns everything a site needs to train: parameters,
//! gradients, Adam's moments and its seeded generators. Gradients are
//! accumulated one sample at a time, so memory does not depend on the batch
//! size: for the default 20 → 64 → 32 → 1 network a trainer takes
//! `size_of::<Trainer<20, 64, 32>>()` bytes (about 56 KiB, checked against
//! 64 KiB in a test) plus under 1 KiB of activations on the stack.

use crate::adam::{Adam, AdamConfig};
use crate::model::{self, Activations, Dropout, NonZero};
use crate::params::Params;
use crate::rng::{self, Purpose, Rng};

/// Training rows borrowed from the caller: features and 0/1 labels.
///
/// Built only through [`Dataset::new`], which checks the rows once, so that
/// training and evaluation cannot fail later.
#[derive(Clone, Copy, Debug)]
pub struct Dataset<'a, const INPUTS: usize> {
    features: &'a [[f32; INPUTS]],
    labels: &'a [f32],
}

/// Why rows were rejected by [`Dataset::new`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum DatasetError {
    /// The feature and label slices have different lengths.
    LengthMismatch {
        /// Rows of features.
        features: usize,
        /// Labels.
        labels: usize,
    },
    /// A label is neither 0 nor 1.
    InvalidLabel {
        /// Zero-based row.
        row: usize,
        /// The label found.
        value: f32,
    },
    /// A feature is NaN or infinite.
    NonFinite {
        /// Zero-based row.
        row: usize,
        /// Zero-based feature column.
        column: usize,
    },
    /// More rows than a `u32` row count can describe.
    TooManyRows {
        /// Rows given.
        rows: usize,
    },
}

impl core::fmt::Display for DatasetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::LengthMismatch { features, labels } => write!(
                f,
                "{features} feature rows but {labels} labels; give one label per row"
            ),
            Self::InvalidLabel { row, value } => {
                write!(f, "label {value} in row {row} is invalid; labels must be 0 or 1")
            }
            Self::NonFinite { row, column } => write!(
                f,
                "feature {column} of row {row} is NaN or infinite; impute or drop it before training"
            ),
            Self::TooManyRows { rows } => {
                write!(f, "{rows} rows exceed the maximum of {}", u32::MAX)
            }
        }
    }
}

impl core::error::Error for DatasetError {}

impl<'a, const INPUTS: usize> Dataset<'a, INPUTS> {
    /// Checks and wraps rows: equal lengths, finite features, 0/1 labels.
    pub fn new(features: &'a [[f32; INPUTS]], labels: &'a [f32]) -> Result<Self, DatasetError> {
        if features.len() != labels.len() {
            return Err(DatasetError::LengthMismatch {
                features: features.len(),
                labels: labels.len(),
            });
        }
        if u32::try_from(features.len()).is_err() {
            return Err(DatasetError::TooManyRows {
                rows: features.len(),
            });
        }
        for (row, (values, &label)) in features.iter().zip(labels).enumerate() {
            if label != 0.0 && label != 1.0 {
                return Err(DatasetError::InvalidLabel { row, value: label });
            }
            if let Some(column) = values.iter().position(|value| !value.is_finite()) {
                return Err(DatasetError::NonFinite { row, column });
            }
        }
        Ok(Self { features, labels })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Number of rows as the `u32` that frames carry; [`Dataset::new`]
    /// guarantees it fits.
    pub fn rows(&self) -> u32 {
        self.labels.len() as u32
    }

    /// Returns true when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The feature rows.
    pub fn features(&self) -> &'a [[f32; INPUTS]] {
        self.features
    }

    /// The labels, each 0 or 1.
    pub fn labels(&self) -> &'a [f32] {
        self.labels
    }
}

/// Rows that training and evaluation read one at a time.
///
/// [`Dataset`] is the usual implementation. A device that cannot hold its
/// prepared rows in RAM can implement it to compute each row when it is
/// read, for example by standardising a raw row kept in flash.
///
/// Implementations must return finite features and a label of 0 or 1, as
/// [`Dataset::new`] checks. Other values train wrong or non-finite
/// parameters, and the wire encoder rejects non-finite ones.
pub trait Samples<const INPUTS: usize> {
    /// Number of rows.
    fn rows(&self) -> u32;

    /// Writes the features of row `index` (below [`Samples::rows`]) into
    /// `features` and returns its label.
    fn sample(&self, index: usize, features: &mut [f32; INPUTS]) -> f32;
}

impl<const INPUTS: usize> Samples<INPUTS> for Dataset<'_, INPUTS> {
    fn rows(&self) -> u32 {
        Dataset::rows(self)
    }

    fn sample(&self, index: usize, features: &mut [f32; INPUTS]) -> f32 {
        *features = self.features[index];
        self.labels[index]
    }
}

/// What a site does with its optimizer state when a new global model
/// arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MomentPolicy {
    /// Keep Adam's moments and step count across rounds. This is the
    /// default because it is what the Keras workflow that fedcore reproduces
    /// does: each client keeps one compiled model and `set_weights` replaces
    /// only the weights, so its optimizer carries on.
    #[default]
    Keep,
    /// Start every round with zero moments and step count, as if each round
    /// trained a fresh optimizer from the global model.
    Reset,
}

/// Training hyperparameters. Defaults follow the Keras workflow: batch 32,
/// dropout 0.3, Keras' Adam defaults, moments kept across rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Rows per mini-batch; the last batch of an epoch may be smaller.
    pub batch_size: u32,
    /// Probability of dropping each hidden unit in training, in `[0, 1)`.
    pub dropout: f32,
    /// Adam's hyperparameters.
    pub adam: AdamConfig,
    /// What happens to Adam's state when a new global model is loaded.
    pub moments: MomentPolicy,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            dropout: 0.3,
            adam: AdamConfig::default(),
            moments: MomentPolicy::Keep,
        }
    }
}

/// An invalid [`TrainConfig`] value.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The batch size is zero.
    ZeroBatchSize,
    /// The dropout rate is outside `[0, 1)`.
    InvalidDropout {
        /// The rate given.
        rate: f32,
    },
    /// The learning rate is not a positive finite number.
    InvalidLearningRate {
        /// The rate given.
        rate: f64,
    },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::ZeroBatchSize => f.write_str("batch size 0 is invalid; use at least 1 row"),
            Self::InvalidDropout { rate } => write!(
                f,
                "dropout rate {rate:?} is invalid; use a value from 0 (no dropout) up to but not including 1"
            ),
            Self::InvalidLearningRate { rate } => write!(
                f,
                "learning rate {rate:?} is invalid; use a positive number such as 0.001"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

impl TrainConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_size == 0 {
            return Err(ConfigError::ZeroBatchSize);
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ConfigError::InvalidDropout { rate: self.dropout });
        }
        let rate = self.adam.learning_rate;
        if !(rate.is_finite() && rate > 0.0 && rate as f32 > 0.0) {
            return Err(ConfigError::InvalidLearningRate { rate });
        }
        Ok(())
    }
}

/// Summary of one training epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochSummary {
    /// Rows trained on.
    pub rows: u32,
    /// Mean training loss over those rows, with dropout active.
    pub mean_loss: f32,
}

/// A site's training state: parameters, gradient buffer, Adam's state, the
/// configuration and the dropout and shuffle generators.
#[derive(Clone, Debug)]
pub struct Trainer<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize> {
    params: Params<INPUTS, HIDDEN1, HIDDEN2>,
    grads: Params<INPUTS, HIDDEN1, HIDDEN2>,
    adam: Adam<INPUTS, HIDDEN1, HIDDEN2>,
    config: TrainConfig,
    dropout: Dropout,
    dropout_rng: Rng,
    shuffle_rng: Rng,
}

/// An integer type that can hold a row index in a shuffle buffer.
///
/// `u32` fits any dataset. `u16` halves the buffer on a microcontroller,
/// for datasets of at most 65,536 rows. Both give the same shuffle.
pub trait RowIndex: Copy {
    /// Rows that a buffer of this type can index.
    const MAX_ROWS: usize;

    /// Returns the index of row `row`, which is below [`Self::MAX_ROWS`].
    fn from_row(row: usize) -> Self;

    /// Returns the row this index names.
    fn row(self) -> usize;
}

impl RowIndex for u16 {
    const MAX_ROWS: usize = 1 << 16;

    fn from_row(row: usize) -> Self {
        row as u16
    }

    fn row(self) -> usize {
        usize::from(self)
    }
}

impl RowIndex for u32 {
    // A dataset's row count fits in u32 (see `Dataset::new`).
    const MAX_ROWS: usize = u32::MAX as usize;

    fn from_row(row: usize) -> Self {
        row as u32
    }

    fn row(self) -> usize {
        self as usize
    }
}

/// Why [`Trainer::train_epoch`] could not use the shuffle buffer it was
/// given. Nothing was trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderError {
    /// The buffer has fewer entries than the dataset has rows.
    TooShort {
        /// Rows in the dataset.
        rows: usize,
        /// Entries in the buffer.
        len: usize,
    },
    /// The buffer's integer type cannot index every row.
    TooNarrow {
        /// Rows in the dataset.
        rows: usize,
        /// Rows the type can index.
        max_rows: usize,
    },
}

impl core::fmt::Display for OrderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::TooShort { rows, len } => write!(
                f,
                "shuffle buffer holds {len} indices but the dataset has {rows} rows; pass a buffer of at least {rows} entries"
            ),
            Self::TooNarrow { rows, max_rows } => write!(
                f,
                "shuffle buffer's index type reaches {max_rows} rows but the dataset has {rows}; use a u32 buffer"
            ),
        }
    }
}

impl core::error::Error for OrderError {}

impl<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>
    Trainer<INPUTS, HIDDEN1, HIDDEN2>
{
    /// Creates a trainer for client `client` starting from `params`.
    ///
    /// Its dropout and shuffle generators are the `Dropout` and `Shuffle`
    /// streams of `seed` for that client.
    pub fn new(
        config: TrainConfig,
        params: Params<INPUTS, HIDDEN1, HIDDEN2>,
        seed: u64,
        client: u32,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            params,
            grads: Params::zeros(),
            adam: Adam::new(),
            config,
            dropout: Dropout::new(config.dropout),
            dropout_rng: rng::stream(seed, Purpose::Dropout, client),
            shuffle_rng: rng::stream(seed, Purpose::Shuffle, client),
        })
    }

    /// The current parameters.
    pub fn params(&self) -> &Params<INPUTS, HIDDEN1, HIDDEN2> {
        &self.params
    }

    /// Adam's state.
    pub fn adam(&self) -> &Adam<INPUTS, HIDDEN1, HIDDEN2> {
        &self.adam
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Replaces the parameters with a new global model, and keeps or resets
    /// Adam's state as [`TrainConfig::moments`] says.
    pub fn load_global(&mut self, params: &Params<INPUTS, HIDDEN1, HIDDEN2>) {
        self.params = *params;
        self.start_round();
    }

    /// Returns the parameters for writing a global model in place: a device
    /// with little RAM decodes a frame straight into them instead of into a
    /// second copy. Call [`Trainer::start_round`] once they hold the new
    /// model.
    pub fn params_mut(&mut self) -> &mut Params<INPUTS, HIDDEN1, HIDDEN2> {
        &mut self.params
    }

    /// Keeps or resets Adam's state as [`TrainConfig::moments`] selects,
    /// for a global model written through [`Trainer::params_mut`].
    /// [`Trainer::load_global`] calls it.
    pub fn start_round(&mut self) {
        if self.config.moments == MomentPolicy::Reset {
            self.adam.reset();
        }
    }

    /// Trains one epoch: shuffles the row order with the trainer's shuffle
    /// generator, then runs mini-batches of `batch_size` rows, each ending
    /// with one Adam step on the batch's mean gradient.
    ///
    /// `order` is scratch space for the shuffled row indices and needs at
    /// least `data.rows()` entries, of `u32` or, for up to 65,536 rows,
    /// `u16`. An empty dataset trains nothing.
    pub fn train_epoch<S: Samples<INPUTS> + ?Sized, O: RowIndex>(
        &mut self,
        data: &S,
        order: &mut [O],
    ) -> Result<EpochSummary, OrderError> {
        let rows = data.rows() as usize;
        if rows > O::MAX_ROWS {
            return Err(OrderError::TooNarrow {
                rows,
                max_rows: O::MAX_ROWS,
            });
        }
        let len = order.len();
        let order = order
            .get_mut(..rows)
            .ok_or(OrderError::TooShort { rows, len })?;
        for (index, slot) in order.iter_mut().enumerate() {
            *slot = O::from_row(index);
        }
        rng::shuffle(&mut self.shuffle_rng, order);

        let mut loss_sum = 0.0f64;
        for batch in order.chunks(self.config.batch_size as usize) {
            loss_sum += f64::from(self.train_batch(data, batch));
        }
        let mean_loss = if rows == 0 {
            0.0
        } else {
            (loss_sum / rows as f64) as f32
        };
        Ok(EpochSummary {
            rows: data.rows(),
            mean_loss,
        })
    }

    /// Runs one mini-batch of the given row indices and returns the sum of
    /// its per-row losses.
    fn train_batch<S: Samples<INPUTS> + ?Sized, O: RowIndex>(
        &mut self,
        data: &S,
        batch: &[O],
    ) -> f32 {
        self.grads = Params::zeros();
        let inverse_size = 1.0 / batch.len() as f32;
        let mut activations = Activations::new();
        let mut non_zero = NonZero::new();
        let mut loss_sum = 0.0f32;

        // Rows come in shuffled order, so each read is a likely cache miss.
        // The next row is read before the current one is trained on, which
        // lets the processor fetch it while the passes run.
        let mut input = [0.0f32; INPUTS];
        let mut next_input = [0.0f32; INPUTS];
        let mut next_label = batch
            .first()
            .map_or(0.0, |&row| data.sample(row.row(), &mut next_input));
        for position in 0..batch.len() {
            core::mem::swap(&mut input, &mut next_input);
            let label = next_label;
            if let Some(&row) = batch.get(position + 1) {
                next_label = data.sample(row.row(), &mut next_input);
            }

            let input = &input;
            let logit = model::forward_sparse(
                &self.params,
                input,
                Some((&self.dropout, &mut self.dropout_rng)),
                &mut activations,
                &mut non_zero,
            );
            let (loss, probability) = model::bce_and_sigmoid(logit, label);
            loss_sum += loss;
            let d_logit = (probability - label) * inverse_size;

            model::backward_unit_major(
                &self.params,
                input,
                &activations,
                d_logit,
                &mut self.grads,
                &non_zero,
            );
        }

        self.adam
            .step_unit_major(&self.config.adam, &mut self.params, &self.grads);
        loss_sum
    }
}

/// Evaluation results: the summed loss and the confusion counts.
///
/// A prediction is positive when the sigmoid output exceeds 0.5, that is
/// when the logit is above zero, as in Keras' binary accuracy.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Rows evaluated.
    pub rows: u32,
    /// Sum of per-row binary cross-entropy.
    pub loss_sum: f64,
    /// Positive rows predicted positive.
    pub true_positives: u32,
    /// Negative rows predicted positive.
    pub false_positives: u32,
    /// Negative rows predicted negative.
    pub true_negatives: u32,
    /// Positive rows predicted negative.
    pub false_negatives: u32,
}

impl Metrics {
    /// Fraction of rows predicted correctly, or `None` without rows.
    pub fn accuracy(&self) -> Option<f64> {
        let correct = u64::from(self.true_positives) + u64::from(self.true_negatives);
        ratio(correct, u64::from(self.rows))
    }

    /// Mean loss per row, or `None` without rows.
    pub fn mean_loss(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.loss_sum / f64::from(self.rows))
    }

    /// True-positive rate (recall), or `None` when no row is positive.
    pub fn sensitivity(&self) -> Option<f64> {
        let positives = u64::from(self.true_positives) + u64::from(self.false_negatives);
        ratio(u64::from(self.true_positives), positives)
    }

    /// True-negative rate, or `None` when no row is negative.
    pub fn specificity(&self) -> Option<f64> {
        let negatives = u64::from(self.true_negatives) + u64::from(self.false_positives);
        ratio(u64::from(self.true_negatives), negatives)
    }

    /// Returns true when the four confusion counts add up to `rows` and the
    /// loss sum is finite and not negative, as for every evaluation this
    /// crate produces. The decoder rejects metrics that fail this check.
    pub fn is_consistent(&self) -> bool {
        let counted = u64::from(self.true_positives)
            + u64::from(self.false_positives)
            + u64::from(self.true_negatives)
            + u64::from(self.false_negatives);
        counted == u64::from(self.rows) && self.loss_sum.is_finite() && self.loss_sum >= 0.0
    }

    /// Adds another set of results, as if both had been one evaluation.
    /// Counts saturate at `u32::MAX` rather than wrap.
    pub fn merge(&mut self, other: &Metrics) {
        self.rows = self.rows.saturating_add(other.rows);
        self.loss_sum += other.loss_sum;
        self.true_positives = self.true_positives.saturating_add(other.true_positives);
        self.false_positives = self.false_positives.saturating_add(other.false_positives);
        self.true_negatives = self.true_negatives.saturating_add(other.true_negatives);
        self.false_negatives = self.false_negatives.saturating_add(other.false_negatives);
    }
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// Evaluates `params` on every row of `data`, without dropout.
pub fn evaluate<
    const INPUTS: usize,
    const HIDDEN1: usize,
    const HIDDEN2: usize,
    S: Samples<INPUTS> + ?Sized,
>(
    params: &Params<INPUTS, HIDDEN1, HIDDEN2>,
    data: &S,
) -> Metrics {
    let mut metrics = Metrics {
        rows: data.rows(),
        ..Metrics::default()
    };
    let mut activations = Activations::new();
    let mut input = [0.0f32; INPUTS];
    for index in 0..data.rows() as usize {
        let label = data.sample(index, &mut input);
        let logit = model::forward(params, &input, None, &mut activations);
        metrics.loss_sum += f64::from(model::bce_with_logit(logit, label));
        let predicted = logit > 0.0;
        let actual = label == 1.0;
        match (predicted, actual) {
            (true, true) => metrics.true_positives += 1,
            (true, false) => metrics.false_positives += 1,
            (false, false) => metrics.true_negatives += 1,
            (false, true) => metrics.false_negatives += 1,
        }
    }
    metrics
}
