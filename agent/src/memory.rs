//! Keeping the agent's resident memory small. glibc's allocator keeps memory the agent has
//! freed: one arena per thread that allocates, and a heap it trims only past a threshold.
//! Loading the eBPF object and reading the kernel's BTF allocate tens of MiB once, and a burst
//! of events fills the queues for a moment; without handing that memory back, the agent's
//! resident size would stay at its highest point for good.

use std::time::Duration;

/// How often free memory is handed back to the kernel.
pub const RELEASE_INTERVAL: Duration = Duration::from_secs(5);

/// Caps glibc's allocator at two arenas (the agent's hot path runs on two threads at most), so
/// memory freed by one thread is reused by the others instead of held per thread. Call once, at
/// start, before other threads exist.
pub fn limit_arenas() {
    // SAFETY: mallopt only changes allocator tuning; called before any other thread runs.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the allocator's free memory back to the kernel.
pub fn release_free_memory() {
    // SAFETY: malloc_trim has no preconditions; it only returns unused pages.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Calls [`release_free_memory`] every [`RELEASE_INTERVAL`], for as long as the agent runs.
pub async fn release_periodically() {
    let mut tick = tokio::time::interval(RELEASE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        release_free_memory();
    }
}
