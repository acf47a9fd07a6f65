//! `kestrel-collector`: see `kestrel-collector --help`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kestrel_collector::cli::{Cli, Command, ServeArgs};
use kestrel_collector::serve::Collector;
use kestrel_service::logging::{self, LogFormat};
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

/// mimalloc: ingest decodes, serializes and frees thousands of small strings per batch, often
/// on another thread than the one that allocated them; glibc's malloc spent about a fifth of
/// the collector's CPU on that (arena locks, `malloc_consolidate`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process. mimalloc asks for them on its arenas
/// (`MADV_HUGEPAGE`), and the collector's churn of batches then faults in and zeroes fresh
/// 2 MiB pages again and again: a fifth of its CPU over a file storm (`clear_page_erms` under
/// `do_huge_pmd_anonymous_page`), gone with small pages. The flag is per address space, so it
/// holds for the runtime's threads already started; failure (an old kernel) only costs speed.
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    logging::init(log_format(&cli));
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Alerts(args) => kestrel_collector::cli::alerts::run(args).map_err(Into::into),
        Command::Rules(args) => kestrel_collector::cli::rules::run(args).map_err(Into::into),
        Command::Events(args) => kestrel_collector::cli::events::run(args).map_err(Into::into),
        Command::Agents(args) => kestrel_collector::cli::agents::run(args).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "kestrel-collector: error: {}",
                kestrel_collector::report::error_chain(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

/// `serve --log-format`, else `log_format` of its `--config` file, else text. A file that does
/// not load is reported by `serve` itself.
fn log_format(cli: &Cli) -> LogFormat {
    let Command::Serve(args) = &cli.command else {
        return LogFormat::default();
    };
    args.log_format.unwrap_or_else(|| {
        args.config
            .as_deref()
            .and_then(|path| kestrel_collector::config::load(path).ok())
            .map(|settings| settings.log_format)
            .unwrap_or_default()
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.check_config {
        return match Collector::check_config(&args) {
            Ok(found) => {
                println!(
                    "kestrel-collector: configuration OK ({} rules, {} sinks)",
                    found.rules, found.sinks
                );
                Ok(())
            }
            Err(problems) => {
                for problem in &problems {
                    eprintln!("kestrel-collector: {problem}");
                }
                anyhow::bail!("{} problem(s) in the configuration", problems.len())
            }
        };
    }
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let collector = Collector::start(&args).await?;
    let shutdown = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        info!(signal = name, "shutdown requested");
    };
    collector.run(shutdown).await?;
    Ok(())
}
