//! The serial link: frames over semihosting stdin and stdout.
//!
//! A fedcore frame starts with its body length as a LEB128 varint and ends
//! with a 4-byte CRC-32, so the reader learns the frame's length from its
//! first bytes and needs no other delimiter.

use core::fmt;

use semihosting::io::{self, Read as _, Write as _};

/// Longest LEB128 encoding of a `u32`.
const MAX_PREFIX_LEN: usize = 5;
/// Length of the CRC-32 that ends a frame.
const CRC_LEN: usize = 4;

/// A failure to read or write a frame.
#[derive(Debug)]
pub enum LinkError {
    /// A semihosting call failed.
    Io(io::Error),
    /// Stdin ended inside a frame.
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
    },
    /// The length prefix does not end within five bytes.
    InvalidPrefix,
    /// The frame is longer than the receive buffer.
    TooLong {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer holds.
        capacity: usize,
    },
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(error) => write!(f, "semihosting I/O failed: {error:?}"),
            Self::Truncated { needed } => {
                write!(f, "stdin ended inside a frame of {needed} bytes")
            }
            Self::InvalidPrefix => f.write_str("frame length prefix is longer than 5 bytes"),
            Self::TooLong { needed, capacity } => write!(
                f,
                "frame of {needed} bytes does not fit the {capacity}-byte receive buffer"
            ),
        }
    }
}

impl From<io::Error> for LinkError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// Semihosting stdin and stdout, opened once.
pub struct Link {
    stdin: io::Stdin,
    stdout: io::Stdout,
    /// Frames received so far.
    pub frames_in: u32,
}

impl Link {
    /// Opens stdin and stdout.
    pub fn open() -> Result<Self, LinkError> {
        Ok(Self {
            stdin: io::stdin()?,
            stdout: io::stdout()?,
            frames_in: 0,
        })
    }

    /// Reads one frame into the start of `buffer` and returns its length,
    /// or `None` when stdin ends before a frame starts.
    pub fn read_frame(&mut self, buffer: &mut [u8]) -> Result<Option<usize>, LinkError> {
        let capacity = buffer.len();
        let mut body_len: u64 = 0;
        let mut prefix_len = 0;
        loop {
            if prefix_len == MAX_PREFIX_LEN {
                return Err(LinkError::InvalidPrefix);
            }
            let mut byte = [0u8; 1];
            if self.stdin.read(&mut byte)? == 0 {
                if prefix_len == 0 {
                    return Ok(None);
                }
                return Err(LinkError::Truncated {
                    needed: prefix_len + 1,
                });
            }
            if prefix_len < capacity {
                buffer[prefix_len] = byte[0];
            }
            body_len |= u64::from(byte[0] & 0x7f) << (7 * prefix_len);
            prefix_len += 1;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }

        // A prefix of five bytes can claim up to 2^35 - 1 bytes, more than
        // any buffer, so the sum is checked in u64 before it becomes a usize.
        let needed = prefix_len as u64 + body_len + CRC_LEN as u64;
        if needed > capacity as u64 {
            let needed = usize::try_from(needed).unwrap_or(usize::MAX);
            return Err(LinkError::TooLong { needed, capacity });
        }
        let needed = needed as usize;
        let mut filled = prefix_len;
        while filled < needed {
            let read = self.stdin.read(&mut buffer[filled..needed])?;
            if read == 0 {
                return Err(LinkError::Truncated { needed });
            }
            filled += read;
        }
        self.frames_in += 1;
        Ok(Some(needed))
    }

    /// Writes one frame to stdout.
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        self.stdout.write_all(frame)?;
        Ok(())
    }
}
