//! Hospitals as firmware under QEMU.
//!
//! A [`QemuDevice`] is one `qemu-system-arm` child process that runs the
//! `firmware-sim` image of one hospital on an emulated Cortex-M4F
//! (`mps2-an386`) or, for a Cortex-M0 image, on the Cortex-M3 of
//! `mps2-an385`. Frames travel over semihosting: the request goes to the
//! child's stdin, the reply comes back on its stdout, and the firmware
//! writes text only to stderr. The firmware trains with the same fedcore
//! code as [`Hospital`](crate::device::Hospital), so with the same seed
//! and settings both send the same bytes.
//!
//! [`firmware`] builds the images: each one contains a single hospital's
//! rows in flash. [`hospitals`] builds and starts one device per hospital, which
//! is what `compare --devices qemu` uses for its federated phase.

pub mod firmware;

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fedcore::wire;
use fedcore::{MomentPolicy, TrainConfig};

use crate::compare::CompareConfig;
use crate::data::Source;
use crate::device::{Device, DeviceError};
use crate::{HIDDEN1, HIDDEN2};

pub use self::firmware::{Firmware, FirmwareError, Image, Target};

/// The QEMU program that runs the firmware.
pub const QEMU: &str = "qemu-system-arm";

/// Longest reply accepted: the largest frame of the widest model the host
/// compiles (64 inputs).
const MAX_REPLY_LEN: usize = wire::frame_capacity::<64, HIDDEN1, HIDDEN2>();

/// Lines of the child's stderr kept for error messages.
const STDERR_LINES: usize = 20;

/// How long [`QemuDevice::shutdown`] and `drop` wait for the firmware to
/// exit after stdin closes, before they kill QEMU.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Settings the firmware needs to train exactly as the in-process hospital
/// with the same client id would. It reaches the firmware as semihosting
/// command-line arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceSettings {
    /// Run seed of the dropout and shuffle streams.
    pub seed: u64,
    /// The client id the hospital sends in its replies. The server numbers
    /// hospitals from 1.
    pub client: u32,
    /// Training hyperparameters.
    pub train: TrainConfig,
}

impl DeviceSettings {
    /// Returns the firmware's arguments after the program name: `serve`,
    /// then one `key=value` per setting. Floats are written with `{}`,
    /// the shortest decimal that parses back to the same bits.
    pub fn arguments(&self) -> Vec<String> {
        let adam = &self.train.adam;
        let moments = match self.train.moments {
            MomentPolicy::Keep => "keep",
            MomentPolicy::Reset => "reset",
        };
        vec![
            "serve".to_owned(),
            format!("seed={}", self.seed),
            format!("client={}", self.client),
            format!("batch-size={}", self.train.batch_size),
            format!("dropout={}", self.train.dropout),
            format!("learning-rate={}", adam.learning_rate),
            format!("beta1={}", adam.beta1),
            format!("beta2={}", adam.beta2),
            format!("epsilon={}", adam.epsilon),
            format!("moments={moments}"),
        ]
    }
}

/// Returns the QEMU command that runs `image` as a serving device, on the
/// board of the image's target.
///
/// `-nographic` would connect QEMU's monitor to stdin, so the display,
/// monitor and UART are switched off and stdin and stdout belong to
/// semihosting alone.
pub fn command(image: &Image, settings: &DeviceSettings) -> Command {
    // QEMU splits option values at commas, and a doubled comma stands for
    // one. No argument contains one today, but a doubled comma keeps the
    // meaning if one ever does.
    let mut semihosting = String::from("enable=on,target=native,arg=firmware-sim");
    for argument in settings.arguments() {
        semihosting.push_str(",arg=");
        semihosting.push_str(&argument.replace(',', ",,"));
    }
    let (cpu, machine) = image.target.qemu_board();
    let mut command = Command::new(QEMU);
    command
        .args(["-cpu", cpu, "-machine", machine])
        .args(["-display", "none", "-monitor", "none", "-serial", "null"])
        .arg("-semihosting-config")
        .arg(semihosting)
        .arg("-kernel")
        .arg(&image.path);
    command
}

/// The end of a device's QEMU process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shutdown {
    /// QEMU's exit status, or `None` when it had to be killed.
    pub status: Option<ExitStatus>,
    /// The last lines the firmware and QEMU wrote to stderr.
    pub stderr: Vec<String>,
}

/// One hospital running as firmware in its own QEMU process.
///
/// Every reply must arrive within the device's timeout. A device whose
/// QEMU exits, crashes or misses the timeout is killed, and this and every
/// later exchange returns a [`DeviceError`]. Dropping the device closes
/// its stdin, gives the firmware [`EXIT_GRACE`] to exit and then kills it.
pub struct QemuDevice {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<io::Result<Vec<u8>>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
    timeout: Duration,
    failed: Option<String>,
}

impl QemuDevice {
    /// Starts QEMU with `image`, a firmware-sim image, and the settings the
    /// firmware trains with. Each reply must arrive within `timeout`.
    pub fn spawn(
        name: impl Into<String>,
        image: &Image,
        settings: &DeviceSettings,
        timeout: Duration,
    ) -> io::Result<Self> {
        let name = name.into();
        let mut child = command(image, settings)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("failed to start {QEMU} for {name}: {error}; install it with `apt-get install qemu-system-arm`"),
                )
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr_pipe = child.stderr.take().expect("stderr is piped");

        let (sender, replies) = mpsc::channel();
        let stdout_reader = thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            loop {
                let frame = read_frame(&mut stdout);
                let end = frame.is_err();
                if sender.send(frame).is_err() || end {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_LINES)));
        let stderr_lines = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut lines = stderr_lines
                    .lock()
                    .unwrap_or_else(|error| error.into_inner());
                if lines.len() == STDERR_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });

        Ok(Self {
            name,
            child,
            stdin,
            replies,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
            timeout,
            failed: None,
        })
    }

    /// Returns the time each reply may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Returns the last lines QEMU and the firmware wrote to stderr.
    pub fn stderr(&self) -> Vec<String> {
        let lines = self
            .stderr
            .lock()
            .unwrap_or_else(|error| error.into_inner());
        lines.iter().cloned().collect()
    }

    /// Closes the link, waits for the firmware to exit, and returns how it
    /// ended with its last stderr lines. The firmware exits with status 0
    /// when the link closes between frames.
    pub fn shutdown(mut self) -> Shutdown {
        let status = self.stop();
        Shutdown {
            status,
            stderr: self.stderr(),
        }
    }

    /// Closes stdin, waits up to [`EXIT_GRACE`] for QEMU to exit, kills it
    /// otherwise, and joins the reader threads.
    fn stop(&mut self) -> Option<ExitStatus> {
        drop(self.stdin.take());
        let status = wait_for_exit(&mut self.child, EXIT_GRACE).or_else(|| {
            let _ = self.child.kill();
            let _ = self.child.wait();
            None
        });
        // The pipes close with the process, so the readers end now.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }

    /// Marks the device failed with `reason`, kills QEMU and returns the
    /// error for the caller.
    fn fail(&mut self, reason: String) -> DeviceError {
        let status = self.stop();
        let mut message = format!("{}: {reason}", self.name);
        if let Some(status) = status {
            message.push_str(&format!("; QEMU exited with {status}"));
        }
        let stderr = self.stderr();
        if !stderr.is_empty() {
            message.push_str(&format!("; stderr: {}", stderr.join(" | ")));
        }
        self.failed = Some(message.clone());
        DeviceError::State(message)
    }
}

impl Device for QemuDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, DeviceError> {
        if let Some(reason) = &self.failed {
            return Err(DeviceError::State(format!(
                "device stopped earlier: {reason}"
            )));
        }
        let kind = wire::peek_header(request)
            .map(|header| header.kind.to_string())
            .unwrap_or_else(|_| "malformed".to_owned());
        // A request is at most about 25 KB, under Linux's default 64 KiB pipe
        // buffer, and the firmware has read every earlier request, so the
        // write returns without waiting for the firmware.
        let written = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(request).and_then(|()| stdin.flush()),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        };
        if let Err(error) = written {
            return Err(self.fail(format!("failed to send the {kind} request: {error}")));
        }
        match self.replies.recv_timeout(self.timeout) {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(self.fail(format!("no reply to the {kind} request: {error}"))),
            Err(RecvTimeoutError::Timeout) => Err(self.fail(format!(
                "timed out after {:.1} s waiting for the reply to the {kind} request",
                self.timeout.as_secs_f64()
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(self.fail(format!(
                "no reply to the {kind} request: the stdout reader ended"
            ))),
        }
    }
}

impl Drop for QemuDevice {
    fn drop(&mut self) {
        if self.stdin.is_some() || !self.readers.is_empty() {
            self.stop();
        }
    }
}

/// Polls `child` until it exits or `grace` passes.
fn wait_for_exit(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Reads one frame: its LEB128 length prefix, its body and its CRC-32.
/// Checking the frame is left to the decoder.
fn read_frame(reader: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut frame = Vec::new();
    let mut body_len: u64 = 0;
    for shift in (0..35).step_by(7) {
        let mut byte = [0u8; 1];
        if let Err(error) = reader.read_exact(&mut byte) {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                let place = if frame.is_empty() { "before" } else { "inside" };
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the firmware's stdout closed {place} a reply frame"),
                ));
            }
            return Err(error);
        }
        frame.push(byte[0]);
        body_len |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    if frame.last().is_some_and(|byte| byte & 0x80 != 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "reply length prefix is longer than 5 bytes",
        ));
    }
    let total = frame.len() as u64 + body_len + 4;
    if total > MAX_REPLY_LEN as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("reply claims {total} bytes, more than the largest frame ({MAX_REPLY_LEN})"),
        ));
    }
    let start = frame.len();
    frame.resize(total as usize, 0);
    reader.read_exact(&mut frame[start..]).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("the firmware's stdout closed inside a reply frame: {error}"),
        )
    })?;
    Ok(frame)
}

/// Reply timeout for a session on `target` whose Train requests ask for up
/// to `epochs` epochs of `rows` training rows.
///
/// Measured on the Cortex-M4F: one training sample costs about 43,000
/// instructions, and QEMU 7.2 runs one epoch of 800 rows in well under a
/// second on a 2-core machine. The timeout allows 1 ms per row per epoch,
/// a budget far above that, on top of 60 s for start-up and a busy
/// machine. The Cortex-M0's soft float takes about 24 times the
/// instructions per sample, and its self-test (one epoch of 800 rows, two
/// evaluations of 200) ran in about 3 s, so it gets 25 ms.
pub fn reply_timeout(target: Target, rows: usize, epochs: u16) -> Duration {
    let per_row_epoch_ms = match target {
        Target::CortexM4F => 1,
        Target::CortexM0 => 25,
    };
    let row_epochs = rows as u64 * u64::from(epochs);
    Duration::from_secs(60) + Duration::from_millis(row_epochs * per_row_epoch_ms)
}

/// Builds one firmware image per hospital of `source` and starts each as a
/// [`QemuDevice`] with the client id and settings the in-process hospitals
/// of `compare` get. `progress` receives one line per hospital.
pub fn hospitals<const INPUTS: usize>(
    source: &Source,
    config: &CompareConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Box<dyn Device>>, FirmwareError> {
    let firmware = Firmware::locate()?;
    let mut devices: Vec<Box<dyn Device>> = Vec::with_capacity(source.hospitals.len());
    for (index, data) in source.hospitals.iter().enumerate() {
        let started = Instant::now();
        let image = firmware.build_from_rows(index + 1, data)?;
        let settings = DeviceSettings {
            seed: config.seed,
            // Client ids start at 1, as in the server.
            client: index as u32 + 1,
            train: config.train,
        };
        let timeout = reply_timeout(image.target, data.train.len(), config.local_epochs);
        let device = QemuDevice::spawn(data.name.clone(), &image, &settings, timeout)
            .map_err(FirmwareError::Spawn)?;
        progress(&format!(
            "{}: firmware built in {:.1} s, running under {QEMU} as client {}",
            data.name,
            started.elapsed().as_secs_f64(),
            settings.client
        ));
        devices.push(Box::new(device));
    }
    // INPUTS is the width the host compiled for these rows. The firmware
    // derives its width from the same rows, and the frames' fingerprints
    // would reject a mismatch.
    debug_assert_eq!(
        crate::compare::input_width(source.feature_count()),
        Some(INPUTS)
    );
    Ok(devices)
}
