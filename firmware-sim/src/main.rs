//! One fedcore hospital as Cortex-M4F firmware.
//!
//! The firmware keeps one hospital's raw rows in flash (see `build.rs`)
//! and trains with the same fedcore code as the host simulation. It talks
//! to the host over semihosting: request frames arrive on stdin, reply
//! frames leave on stdout, and text goes to stderr only.
//!
//! The semihosting command line picks the mode. `<program> serve
//! key=value...` serves frames until stdin closes, with the training
//! settings the host gives (see [`settings`]). Any other command line, such
//! as the bare kernel path that `cargo run` passes, runs the self-test.

#![no_std]
#![no_main]

mod exit;
mod hospital;
mod link;
mod measure;
mod rows;
mod selftest;
mod settings;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use semihosting::experimental::env;

/// Maximum length of the semihosting command line, in bytes.
const COMMAND_LINE_CAPACITY: usize = 512;

#[entry]
fn main() -> ! {
    #[cfg(armv6m)]
    trap_unaligned_access();
    measure::start_ticks();
    let args = match env::args::<COMMAND_LINE_CAPACITY>() {
        Ok(args) => args,
        Err(error) => exit::fail(
            exit::SETTINGS,
            format_args!("failed to read the semihosting command line: {error:?}"),
        ),
    };
    let mut args = (&args).map(|arg| arg.unwrap_or(""));
    let _program = args.next();
    match args.next() {
        Some("serve") => {
            let settings = settings::parse(args)
                .unwrap_or_else(|error| exit::fail(exit::SETTINGS, format_args!("{error}")));
            hospital::serve(&settings)
        }
        _ => selftest::run(),
    }
}

/// Makes unaligned loads and stores fault, as they do on a Cortex-M0.
/// QEMU runs the thumbv6m image on a Cortex-M3, which would allow them.
#[cfg(armv6m)]
fn trap_unaligned_access() {
    /// The UNALIGN_TRP bit of the SCB's CCR.
    const UNALIGN_TRP: u32 = 1 << 3;
    // SAFETY: main calls this first, before anything else uses SCB, and
    // setting UNALIGN_TRP only adds a fault for accesses that Armv6-M
    // forbids. Writing CONTROL back unchanged alters nothing.
    unsafe {
        let scb = cortex_m::Peripherals::steal().SCB;
        scb.ccr.modify(|ccr| ccr | UNALIGN_TRP);
        // QEMU 7.2 applies a new CCR only when it next recomputes its
        // cached CPU state, at an exception or an MSR. Without this write,
        // unaligned accesses go untrapped until the first exception.
        cortex_m::register::control::write(cortex_m::register::control::read());
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    exit::fail(
        exit::FAULT,
        format_args!(
            "hard fault at pc {:#010x}, lr {:#010x}",
            frame.pc(),
            frame.lr()
        ),
    )
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    exit::fail(
        exit::FAULT,
        format_args!("unexpected exception or interrupt {irqn}"),
    )
}

#[exception]
fn SysTick() {
    measure::count_wrap();
}
