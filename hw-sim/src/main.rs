use clap::{Parser, Subcommand};

/// Simulators of the store's devices and outside parties, for office testing.
#[derive(Parser)]
#[command(name = "hw-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receipt printer, scale, scanner and customer display on pseudo-terminals.
    Devices(hw_sim::devices::Args),
    /// A WeChat-Pay-v2-shaped payment provider with a ledger and scenarios.
    Payments(hw_sim::payments::Args),
    /// A Meituan-style delivery platform: signed order pushes, its API, faults.
    Platform(hw_sim::platform::Args),
    /// A store day in the office: the gateway, an agent and every simulator,
    /// a seeded day with faults, then a consistency report (exit 0 only if
    /// every check holds).
    Office(hw_sim::office::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The office day runs the simulators in-process: their per-call lines
    // would drown its progress, so it logs warnings only unless told.
    let default = match cli.command {
        Command::Office(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Devices(args) => hw_sim::devices::run(args).await,
        Command::Payments(args) => hw_sim::payments::run(args).await,
        Command::Platform(args) => hw_sim::platform::run(args).await,
        Command::Office(args) => {
            if hw_sim::office::run(args).await? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
    }
}
