//! What the agent costs the programs it watches, on the calls its hooks see most often:
//! receives. Since DNS answers are captured, every `recvfrom`/`recvmsg` on the host runs the
//! agent's entry program (a datagram socket is followed to the exit, a stream socket is not).
//!
//! The same workloads are timed without and with the real release agent running, alternating
//! three times; reported is the time per operation and the with / without ratio per workload
//! (no target: a figure to watch). Workloads, each a send then a receive of one byte:
//! - `udp`: a connected UDP socket pair on loopback (followed to the exit, dropped there: not
//!   from port 53);
//! - `unix stream`: a Unix stream socket pair (dropped at entry);
//! - `pipe`: a pipe's write and read, which no hook sees (the floor).
//!
//! Needs root; without it, says so and skips. `KESTREL_BENCH_OPS` sets the operations per
//! measurement (default 200,000).

use std::{
    io::{Read, Write},
    net::UdpSocket,
    os::{fd::AsRawFd, unix::net::UnixStream},
    process::ExitCode,
    time::{Duration, Instant},
};

use kestrel_testkit::{bench, stack::Agent};

const AGENT: &str = "overhead-bench";

fn main() -> ExitCode {
    let ops = bench::env_or("KESTREL_BENCH_OPS", 200_000);
    bench::main("syscall_overhead", || run(ops))
}

/// Average time of `op` over `ops` runs.
fn time_per_op(ops: u64, mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for _ in 0..ops {
        op()?;
    }
    Ok(started.elapsed() / ops as u32)
}

/// Time per send-and-receive of one byte, for each workload.
fn measure(ops: u64) -> anyhow::Result<[Duration; 3]> {
    let mut byte = [0u8; 1];
    let (a, b) = (
        UdpSocket::bind("127.0.0.1:0")?,
        UdpSocket::bind("127.0.0.1:0")?,
    );
    a.connect(b.local_addr()?)?;
    b.connect(a.local_addr()?)?;
    let udp = time_per_op(ops, || {
        a.send(b"x")?;
        b.recv(&mut byte)?;
        Ok(())
    })?;
    let (mut a, b) = UnixStream::pair()?;
    let unix = time_per_op(ops, || {
        a.write_all(b"x")?;
        // `recv` (recvfrom) rather than read(2), so the hook sees it.
        let got = unsafe { libc::recv(b.as_raw_fd(), byte.as_mut_ptr().cast(), 1, 0) };
        anyhow::ensure!(got == 1, "recv: {}", std::io::Error::last_os_error());
        Ok(())
    })?;
    let (mut reader, mut writer) = std::io::pipe()?;
    let pipe = time_per_op(ops, || {
        writer.write_all(b"x")?;
        reader.read_exact(&mut byte)?;
        Ok(())
    })?;
    Ok([udp, unix, pipe])
}

fn run(ops: u64) -> anyhow::Result<()> {
    let bench::ReleaseStack {
        dir: _dir,
        collector: _collector,
        mut agent,
    } = bench::release_stack("syscall_overhead", AGENT, &[])?;
    agent.stop(Duration::from_secs(10));
    const NAMES: [&str; 3] = ["udp", "unix stream", "pipe"];
    let mut totals = [[Duration::ZERO; 3]; 2];
    for round in 0..3 {
        let without = measure(ops)?;
        start_agent(&mut agent);
        let with = measure(ops)?;
        agent.stop(Duration::from_secs(10));
        for (i, name) in NAMES.iter().enumerate() {
            println!(
                "syscall_overhead: round {round} {name:<11} without {:>7.2} us, with {:>7.2} us",
                without[i].as_secs_f64() * 1e6,
                with[i].as_secs_f64() * 1e6
            );
            totals[0][i] += without[i];
            totals[1][i] += with[i];
        }
    }
    for (i, name) in NAMES.iter().enumerate() {
        println!(
            "syscall_overhead: {name:<11} with / without agent: {:.2} ({:.2} vs {:.2} us per send and receive)",
            totals[1][i].as_secs_f64() / totals[0][i].as_secs_f64(),
            totals[1][i].as_secs_f64() / 3.0 * 1e6,
            totals[0][i].as_secs_f64() / 3.0 * 1e6
        );
    }
    Ok(())
}

fn start_agent(agent: &mut Agent) {
    agent.start();
    agent.expect_connected();
    // Let its start-up work (reading /proc, connecting) settle.
    std::thread::sleep(Duration::from_secs(2));
}
