//! Exit statuses and the stderr log. Stdout carries frames only, so every
//! message goes to stderr.

use core::fmt::{self, Write as _};

use semihosting::fd::AsFd as _;
use semihosting::sys::arm_compat::{sys_open, sys_write_orig, OpenMode};

/// The self-test passed, or the host closed the link after the last frame.
pub const SUCCESS: i32 = 0;
/// A self-test check failed.
pub const SELF_TEST: i32 = 1;
/// The semihosting command line is missing a setting or has an invalid one.
pub const SETTINGS: i32 = 2;
/// A request frame was rejected by the decoder.
pub const REJECTED: i32 = 3;
/// A valid request could not be served, for example training before the
/// standardisation arrived.
pub const STATE: i32 = 4;
/// Reading or writing a frame failed, or a frame was too long.
pub const LINK: i32 = 5;
/// A hard fault or an unexpected exception.
pub const FAULT: i32 = 6;
// The `semihosting` crate's panic handler exits with 101.

/// Stderr as a `fmt::Write` sink. A message is lost, never sent to stdout,
/// when stderr cannot be opened.
pub struct Stderr;

impl fmt::Write for Stderr {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Opening ":tt" for append is semihosting's request for stderr.
        let fd = sys_open(c":tt", OpenMode::WRONLY_APPEND).map_err(|_| fmt::Error)?;
        let mut bytes = text.as_bytes();
        while !bytes.is_empty() {
            // SYS_WRITE returns the number of bytes it did not write.
            match sys_write_orig(fd.as_fd(), bytes) {
                Ok(unwritten) if unwritten < bytes.len() => {
                    bytes = &bytes[bytes.len() - unwritten..];
                }
                _ => return Err(fmt::Error),
            }
        }
        Ok(())
    }
}

/// Writes one line to stderr.
pub fn log(message: fmt::Arguments<'_>) {
    let mut line = LineBuffer::new();
    let _ = line.write_fmt(message);
    let _ = Stderr.write_str(line.as_str());
    let _ = Stderr.write_str("\n");
}

/// Logs `message` and ends QEMU with `status`.
pub fn fail(status: i32, message: fmt::Arguments<'_>) -> ! {
    log(format_args!("error: {message}"));
    semihosting::process::exit(status)
}

/// Ends QEMU with `status`.
pub fn exit(status: i32) -> ! {
    semihosting::process::exit(status)
}

/// Collects a message, so that it reaches stderr in one semihosting call
/// rather than one per formatted piece. Text past its capacity is dropped.
struct LineBuffer {
    bytes: [u8; 512],
    len: usize,
}

impl LineBuffer {
    const fn new() -> Self {
        Self {
            bytes: [0; 512],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `str`s are appended, so the bytes are valid UTF-8
        // unless a cut fell inside a character; then show what is valid.
        match core::str::from_utf8(&self.bytes[..self.len]) {
            Ok(text) => text,
            Err(error) => core::str::from_utf8(&self.bytes[..error.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl fmt::Write for LineBuffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = self.bytes.len() - self.len;
        let copied = text.len().min(room);
        self.bytes[self.len..self.len + copied].copy_from_slice(&text.as_bytes()[..copied]);
        self.len += copied;
        Ok(())
    }
}
