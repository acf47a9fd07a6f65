//! Kestrel's eBPF programs. Each hook fills a ring-buffer slot in place (records are larger than
//! the 512-byte eBPF stack) and counts a drop per CPU and kind when the ring buffer is full.

#![no_std]
#![no_main]

mod creds;
mod dns;
mod file;
mod filter;
mod hooks;
mod kernel;
mod maps;
mod net;
mod objects;
mod process;
mod strings;
mod syscall;
mod uring;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The probe-read helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
