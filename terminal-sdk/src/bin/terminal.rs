//! `terminal`: run the counter agent (`terminal run`), or try the counter
//! devices by hand.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use proto::device::escpos::{Align, QrLevel, Receipt};
use terminal_sdk::device::{
    Display, LineSettings, PortSpec, Printer, Scale, Scanner, SerialConnect, list_ports,
};

#[derive(Parser)]
#[command(
    name = "terminal",
    version,
    about = "The store terminal: the counter agent and device checks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct PortArgs {
    /// `VID:PID[:SERIAL]` (hex, e.g. 1A86:7523) or a path (e.g. /dev/ttyUSB0).
    #[arg(long)]
    port: PortSpec,
    /// Baud rate; defaults to the device's usual one.
    #[arg(long)]
    baud: Option<u32>,
    /// Seconds to wait for the device to appear.
    #[arg(long, default_value_t = 3)]
    wait: u64,
}

impl PortArgs {
    fn connect(&self, settings: LineSettings) -> SerialConnect {
        let mut settings = settings;
        if let Some(b) = self.baud {
            settings.baud = b;
        }
        SerialConnect::new(self.port.clone(), settings)
    }
    fn wait(&self) -> Duration {
        Duration::from_secs(self.wait)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the counter agent: local API, sales queue, uploads to the gateway.
    Run {
        /// The TOML file (every setting may also come from `TERMINAL_*`).
        #[arg(long, env = "TERMINAL_CONFIG")]
        config: Option<std::path::PathBuf>,
    },
    /// List serial ports with their USB ids.
    Ports,
    /// Print a test receipt (Chinese text, a QR code, a cut).
    PrintTest {
        #[command(flatten)]
        port: PortArgs,
        /// Also open the cash drawer.
        #[arg(long)]
        drawer: bool,
    },
    /// Read one stable weight.
    Weigh {
        #[command(flatten)]
        port: PortArgs,
        /// Tare before weighing.
        #[arg(long)]
        tare: bool,
        /// Zero before weighing.
        #[arg(long)]
        zero: bool,
    },
    /// Print scanned codes with what they are.
    Scan {
        #[command(flatten)]
        port: PortArgs,
        /// Stop after this many codes (default: run until Ctrl-C).
        #[arg(long)]
        count: Option<usize>,
    },
    /// Show two lines on the customer display.
    Display {
        #[command(flatten)]
        port: PortArgs,
        upper: String,
        #[arg(default_value = "")]
        lower: String,
    },
}

fn test_receipt() -> Receipt {
    Receipt::new()
        .align(Align::Center)
        .size(2, 2)
        .line("测试小票")
        .size(1, 1)
        .line("Test receipt")
        .align(Align::Left)
        .line("苹果 1.234 kg x 12.80   15.80")
        .bold(true)
        .line("合计 TOTAL             15.80")
        .bold(false)
        .align(Align::Center)
        .qr(b"https://example.com/receipt/test", 6, QrLevel::M)
        .feed(3)
        .cut()
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config } => {
            let cfg =
                terminal_sdk::agent::config::load(config.as_deref(), |k| std::env::var(k).ok())?;
            terminal_sdk::agent::run(cfg, shutdown_signal()).await?;
        }
        Command::Ports => {
            let ports = list_ports()?;
            if ports.is_empty() {
                println!("no serial ports found");
            }
            for p in ports {
                let id = match (p.vid, p.pid) {
                    (Some(v), Some(d)) => format!("{v:04X}:{d:04X}"),
                    _ => "-".into(),
                };
                println!(
                    "{:<20} {:<10} serial={:<16} {} {}  (use --port {})",
                    p.path.display(),
                    id,
                    p.serial.as_deref().unwrap_or("-"),
                    p.manufacturer.as_deref().unwrap_or(""),
                    p.product.as_deref().unwrap_or(""),
                    p.spec()
                );
            }
        }
        Command::PrintTest { port, drawer } => {
            let mut p = Printer::new(port.connect(LineSettings::printer()));
            p.open();
            p.claim(port.wait()).await?;
            let health = p.enable().await?;
            if health.paper_near_end {
                println!("warning: paper near end");
            }
            let job = p.print(&test_receipt()).await?;
            println!("printed job {}", job.0);
            if drawer {
                p.open_drawer().await?;
                println!("drawer kicked");
            }
        }
        Command::Weigh { port, tare, zero } => {
            let mut s = Scale::new(port.connect(LineSettings::scale()));
            s.open();
            s.claim(port.wait()).await?;
            s.enable().await?;
            if zero {
                s.zero().await?;
            }
            if tare {
                s.tare().await?;
            }
            println!("{}", s.read_stable().await?);
        }
        Command::Scan { port, count } => {
            let mut s = Scanner::new(port.connect(LineSettings::scanner()));
            s.open();
            s.claim(port.wait()).await?;
            s.enable().await?;
            let mut seen = 0;
            while count.is_none_or(|c| seen < c) {
                let scan = s.next().await?;
                println!("{:<26} {:?}", scan.raw, scan.code);
                seen += 1;
            }
        }
        Command::Display { port, upper, lower } => {
            let mut d = Display::new(port.connect(LineSettings::display()));
            d.open();
            d.claim(port.wait()).await?;
            d.enable().await?;
            d.show(&upper, &lower).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM: stop taking requests, let the tasks finish.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn tracing_init() {
    // Logs go to stderr; `RUST_LOG` chooses (default: info for the agent,
    // warnings for the rest).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,terminal_sdk::agent=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
