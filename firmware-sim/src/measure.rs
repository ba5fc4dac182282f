//! Work and memory measurements: SysTick ticks and the stack's high-water
//! mark.
//!
//! DWT's cycle counter reads 0 under QEMU, so work is counted with SysTick
//! on the processor clock. On the mps2-an386 and mps2-an385 boards that
//! clock is 25 MHz, and under `-icount shift=0` QEMU runs one instruction
//! per nanosecond of virtual time, so one tick is 40 instructions. Without
//! `-icount` ticks follow the host's wall clock and count nothing useful.
//! [`calibrate`] checks the ratio on a loop of known length.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;

/// SysTick's reload value: its counter is 24 bits wide.
const RELOAD: u32 = 0x00ff_ffff;

/// Times SysTick has wrapped since [`start_ticks`].
static WRAPS: AtomicU32 = AtomicU32::new(0);

/// Starts SysTick counting down from [`RELOAD`] on the processor clock,
/// with an interrupt at every wrap.
pub fn start_ticks() {
    // SAFETY: only this function takes SYST, once, before anything else
    // touches it.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Counts one SysTick wrap; called by the SysTick exception.
pub fn count_wrap() {
    // Only this exception writes WRAPS, and it cannot preempt itself, so a
    // load and a store suffice. thumbv6m has no atomic read-modify-write.
    WRAPS.store(WRAPS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Returns the ticks since [`start_ticks`].
pub fn ticks() -> u64 {
    loop {
        let wraps = WRAPS.load(Ordering::Relaxed);
        let current = SYST::get_current();
        // A wrap between the two loads would pair a new counter value with
        // the old wrap count; read again in that case.
        if WRAPS.load(Ordering::Relaxed) == wraps {
            return u64::from(wraps) * u64::from(RELOAD + 1) + u64::from(RELOAD - current);
        }
    }
}

/// Instructions that one SysTick tick stands for under `-icount shift=0`.
pub const INSTRUCTIONS_PER_TICK: u64 = 40;

/// Runs a loop of exactly `2 * iterations` instructions (a subtract and a
/// branch each turn) and returns the ticks it took.
pub fn calibrate(iterations: u32) -> u64 {
    let start = ticks();
    // SAFETY: the loop only counts r0 down to zero.
    unsafe {
        core::arch::asm!(
            "2:",
            "subs {0}, {0}, #1",
            "bne 2b",
            inout(reg) iterations => _,
            options(nomem, nostack),
        );
    }
    ticks() - start
}

/// The value cortex-m-rt paints the stack with before `main` (its
/// `paint-stack` feature).
const PAINT: u32 = 0xcccc_cccc;

extern "C" {
    // Both come from cortex-m-rt's linker script: the stack grows down from
    // `_stack_start` towards `_stack_end`, the end of `.bss`.
    static _stack_start: u32;
    static _stack_end: u32;
    // The start of `.data`, the first section in RAM; `.bss` and `.uninit`
    // follow it up to `_stack_end`.
    static __sdata: u32;
}

/// Returns the RAM that statics take: `.data`, `.bss` and `.uninit`, from
/// the start of RAM to the bottom of the stack.
pub fn static_ram() -> usize {
    let start = core::ptr::addr_of!(__sdata) as usize;
    let end = core::ptr::addr_of!(_stack_end) as usize;
    end - start
}

/// Returns the most stack used since reset, in bytes: the distance from the
/// stack's top to the lowest word whose paint was overwritten.
pub fn stack_high_water() -> usize {
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut address = bottom;
    while address < top {
        // SAFETY: the addresses lie in RAM between the linker symbols, and
        // every word there is initialised, by the paint or by the stack.
        let word = unsafe { core::ptr::read_volatile(address as *const u32) };
        if word != PAINT {
            break;
        }
        address += 4;
    }
    top - address
}
