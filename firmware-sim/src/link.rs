//! The serial link: frames over semihosting stdin and stdout.
//!
//! A fedcore frame starts with its body length as a LEB128 varint and ends
//! with a 4-byte CRC-32, so the reader learns the frame's length from its
//! first bytes and needs no other delimiter. Frames pass through
//! [`fedcore::wire::read_frame`] and the `write_*` functions in pieces, so
//! the device never keeps a whole frame in RAM.

use fedcore::wire::{Sink, Source};
use semihosting::io::{self, Read as _, Write as _};

/// Opens semihosting stdin and stdout as the link's two directions.
pub fn open() -> Result<(Input, Output), io::Error> {
    Ok((Input(io::stdin()?), Output(io::stdout()?)))
}

/// Request frames from the host: semihosting stdin.
pub struct Input(io::Stdin);

/// Reply frames to the host: semihosting stdout.
pub struct Output(io::Stdout);

impl Source for Input {
    type Error = io::Error;

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        self.0.read(buf)
    }
}

impl Sink for Output {
    type Error = io::Error;

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), io::Error> {
        self.0.write_all(bytes)
    }
}
