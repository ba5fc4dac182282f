//! Runs independent jobs on several threads and replays their output in
//! job order, so that what users see does not depend on the thread count.
//!
//! A job reports progress through a `&mut dyn FnMut(&str)` and logs with
//! `tracing`. A job that runs ahead of the ones before it has its progress
//! lines and, when the global subscriber writes through [`LogWriter`], its
//! formatted log events held back on its thread. They are replayed in job
//! order once every earlier job has been replayed. The job next in order
//! runs on the calling thread with its output passed straight through,
//! which is all that happens with one thread.

use std::cell::RefCell;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// Output of a job that is held back until its turn.
enum HeldOutput {
    /// A progress line.
    Line(String),
    /// Formatted log events, as they would have gone to standard error.
    Log(Vec<u8>),
}

thread_local! {
    /// The output held back on this thread, or `None` when output passes
    /// straight through.
    static HELD: RefCell<Option<Vec<HeldOutput>>> = const { RefCell::new(None) };
}

/// Runs `job` with this thread's output held back, and returns its result
/// with that output.
fn hold_output<R>(job: impl FnOnce() -> R) -> (R, Vec<HeldOutput>) {
    HELD.with(|held| *held.borrow_mut() = Some(Vec::new()));
    let result = job();
    let output = HELD
        .with(|held| held.borrow_mut().take())
        .unwrap_or_default();
    (result, output)
}

fn hold_line(line: &str) {
    HELD.with(|held| {
        if let Some(output) = held.borrow_mut().as_mut() {
            output.push(HeldOutput::Line(line.to_owned()));
        }
    });
}

/// Adds `bytes` to this thread's held output and returns true, or returns
/// false when output on this thread passes straight through.
fn hold_log(bytes: &[u8]) -> bool {
    HELD.with(|held| match held.borrow_mut().as_mut() {
        Some(output) => {
            match output.last_mut() {
                Some(HeldOutput::Log(log)) => log.extend_from_slice(bytes),
                _ => output.push(HeldOutput::Log(bytes.to_vec())),
            }
            true
        }
        None => false,
    })
}

fn replay(output: Vec<HeldOutput>, progress: &mut dyn FnMut(&str)) {
    for entry in output {
        match entry {
            HeldOutput::Line(line) => progress(&line),
            // Like tracing's own writer, a log that cannot be written is
            // dropped rather than failing the job.
            HeldOutput::Log(bytes) => {
                let _ = io::stderr().lock().write_all(&bytes);
            }
        }
    }
}

/// The writer for `tracing_subscriber::fmt` that makes logs follow job
/// order: it writes to standard error, except on a thread whose output is
/// held back, where it keeps the formatted events for replay.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if hold_log(bytes) {
            Ok(bytes.len())
        } else {
            io::stderr().write(bytes)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Returns the number of threads for callers that set none: the
/// parallelism the operating system grants this process, or 1 when it
/// cannot tell.
pub fn default_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// A finished job's result and held-back output.
type Finished<T, E> = (Result<T, E>, Vec<HeldOutput>);

/// Runs `first` on the calling thread and `run_job` on each of `jobs` on
/// up to `threads` threads in all, and returns their results in order. Output reaches
/// `progress` and standard error in the order of a sequential run: `first`,
/// then each job in turn.
///
/// With one thread the jobs run one after another in order. With more,
/// they start in order of falling `cost`, so that the longest jobs do not
/// come last, and `first` runs beside them. The first job (in order) that
/// fails ends the run with its error once its output is replayed. Jobs
/// after a failed one no longer start, jobs still running finish, and the
/// output of the jobs after the failed one is dropped.
///
/// `first` may hold values that cannot move between threads, such as
/// devices, because it never leaves the calling thread.
pub fn run_in_order<F, J, T, E>(
    threads: NonZeroUsize,
    first: impl FnOnce(&mut dyn FnMut(&str)) -> Result<F, E>,
    jobs: &[J],
    cost: impl Fn(&J) -> u64,
    run_job: impl Fn(&J, &mut dyn FnMut(&str)) -> Result<T, E> + Sync,
    progress: &mut dyn FnMut(&str),
) -> Result<(F, Vec<T>), E>
where
    J: Sync,
    T: Send,
    E: Send,
{
    let workers = (threads.get() - 1).min(jobs.len());
    let mut start_order: Vec<usize> = (0..jobs.len()).collect();
    if workers > 0 {
        // A stable sort keeps jobs of equal cost in job order.
        start_order.sort_by_key(|&index| std::cmp::Reverse(cost(&jobs[index])));
    }
    let next_start = AtomicUsize::new(0);
    let stopped = AtomicBool::new(false);
    // The lowest index of a job that failed: the jobs after it need not
    // start, because the run ends with that job's error.
    let first_failure = AtomicUsize::new(usize::MAX);
    let claim = || loop {
        if stopped.load(Ordering::Relaxed) {
            return None;
        }
        let index = *start_order.get(next_start.fetch_add(1, Ordering::Relaxed))?;
        if index < first_failure.load(Ordering::Relaxed) {
            return Some(index);
        }
    };
    let run_job = |index: usize, progress: &mut dyn FnMut(&str)| {
        let result = run_job(&jobs[index], progress);
        if result.is_err() {
            first_failure.fetch_min(index, Ordering::Relaxed);
        }
        result
    };
    let run_job = &run_job;

    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel::<(usize, Finished<T, E>)>();
        for _ in 0..workers {
            let sender = sender.clone();
            let claim = &claim;
            scope.spawn(move || {
                while let Some(index) = claim() {
                    let finished =
                        hold_output(|| run_job(index, &mut |line: &str| hold_line(line)));
                    if sender.send((index, finished)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);

        let outcome = (|| {
            let first_result = first(progress)?;
            let mut finished: Vec<Option<Finished<T, E>>> = jobs.iter().map(|_| None).collect();
            let mut results = Vec::with_capacity(jobs.len());
            while results.len() < jobs.len() {
                let next = results.len();
                while let Ok((index, job_finished)) = receiver.try_recv() {
                    finished[index] = Some(job_finished);
                }
                if let Some((result, output)) = finished[next].take() {
                    replay(output, progress);
                    results.push(result?);
                    continue;
                }
                match claim() {
                    Some(index) if index == next => results.push(run_job(index, progress)?),
                    Some(index) => {
                        finished[index] = Some(hold_output(|| {
                            run_job(index, &mut |line: &str| hold_line(line))
                        }));
                    }
                    None => {
                        // Every job is taken, and `next` is still running on
                        // a worker. The channel closes only when every worker
                        // has returned, which leaves `next` unfinished only if
                        // its worker panicked.
                        let (index, job_finished) = receiver
                            .recv()
                            .expect("a worker thread panicked while running a job");
                        finished[index] = Some(job_finished);
                    }
                }
            }
            Ok((first_result, results))
        })();
        if outcome.is_err() {
            stopped.store(true, Ordering::Relaxed);
        }
        outcome
    })
}
