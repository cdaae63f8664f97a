//! `gateway`: serve, migrate, manage keys, show the configuration.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::{self, Config, Env, Settings};
use gateway::db::Db;
use gateway::http;
use gateway::keys::{self, KeySpec, Role};
use proto::order::{StoreId, TerminalId};

#[derive(Parser)]
#[command(name = "gateway", version, about = "Smart-terminal order gateway")]
struct Cli {
    /// TOML configuration file (the environment, then flags, override it).
    #[arg(long, env = "GATEWAY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Any setting as `key=value` (`listen=…`, `payments.poll_ms=500`; see
    /// `gateway config show`); wins over the file and the environment.
    #[arg(long = "set", value_name = "KEY=VALUE", global = true, value_parser = config::parse_set)]
    set: Vec<(String, String)>,
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: Command,
}

/// Global: accepted before or after the subcommand.
#[derive(clap::Args)]
struct DbArgs {
    /// sqlite://path/to/file.db (default sqlite://data/gateway.db) or postgres://…
    /// (also GATEWAY_DATABASE_URL, `[database] url`).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Do not apply pending migrations first (`serve` and `keys` apply them;
    /// also GATEWAY_NO_MIGRATE, `[database] migrate = false`).
    #[arg(long, global = true)]
    no_migrate: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080; also GATEWAY_LISTEN).
        #[arg(long)]
        listen: Option<String>,
        /// Seed demo stores, products and stock, and print demo keys (also
        /// GATEWAY_DEMO).
        #[arg(long)]
        demo: bool,
    },
    /// The configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Apply, revert or list database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// A consistent copy of the live SQLite database into FILE (a new file;
    /// the gateway may keep serving). PostgreSQL: use pg_dump.
    Backup {
        /// Where the copy goes (must not exist).
        file: std::path::PathBuf,
    },
    /// The scheduled jobs: interval, last run and outcome, next run, the
    /// instance holding each, last error (from the database: every
    /// instance's).
    Jobs {
        /// Print them as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// The go-live preflight: configuration, data directory, database and
    /// migrations, outside services, secrets, clock, listen address; one
    /// row each (✔/✘ and why), exit 1 on any ✘.
    Check {
        /// Print the rows as a JSON array of {check, ok, detail}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (defaults, file, environment,
    /// flags merged) as TOML, each value with its source, secrets as "***";
    /// then check it as `serve` would.
    Show,
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the newest applied migration, or every one newer than `--to`.
    /// Refuses, naming what would go, when a down script would drop tables
    /// or columns that hold data, unless `--yes`.
    Down {
        /// Revert down to this version (0: every migration).
        #[arg(long)]
        to: Option<i64>,
        /// Revert even when that drops data.
        #[arg(long)]
        yes: bool,
    },
    /// List migrations: applied or pending, and each script's checksum
    /// (and whether the applied one is this binary's).
    Status,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Make a key; prints it as the last line (it is not shown again).
    Create {
        #[arg(long, value_parser = ["admin", "app", "terminal"])]
        role: String,
        /// The store a terminal key belongs to.
        #[arg(long)]
        store: Option<String>,
        /// The terminal's id (its SOAP username); made up when absent.
        #[arg(long)]
        terminal: Option<String>,
        #[arg(long)]
        label: Option<String>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by its id.
    Revoke { id: String },
}

fn main() {
    let cli = Cli::parse();
    // One line, with its causes; no backtrace dump for an operator's mistake.
    if let Err(e) = start(cli) {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

fn start(cli: Cli) -> anyhow::Result<()> {
    // The dedicated flags are settings like any `--set`, in the same layer.
    let mut flags = Vec::new();
    if let Some(url) = &cli.db.database_url {
        flags.push(("database.url".to_owned(), url.clone()));
    }
    if cli.db.no_migrate {
        flags.push(("database.migrate".to_owned(), "false".to_owned()));
    }
    if let Command::Serve { listen, demo } = &cli.command {
        if let Some(listen) = listen {
            flags.push(("http.listen".to_owned(), listen.clone()));
        }
        if *demo {
            flags.push(("demo".to_owned(), "true".to_owned()));
        }
    }
    flags.extend(cli.set.iter().cloned());
    let settings = Settings::load(cli.config.as_deref(), &Env::process(), &flags);
    if let Command::Check { json } = cli.command {
        // A configuration that does not load is the check's first row.
        let s = settings.as_ref().ok();
        gateway::telemetry::init(
            s.and_then(|s| s.file.log.as_deref()),
            s.map(|s| s.log_format()).unwrap_or_default(),
        );
        let rt = tokio::runtime::Runtime::new()?;
        let rows = rt.block_on(gateway::check::run(settings, cli.config.as_deref()));
        if json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            print!("{}", gateway::check::table(&rows));
        }
        let failed = rows.iter().filter(|r| !r.ok).count();
        anyhow::ensure!(failed == 0, "{failed} of {} checks failed", rows.len());
        return Ok(());
    }
    let settings = settings?;
    gateway::telemetry::init(settings.file.log.as_deref(), settings.log_format());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run(cli.command, settings))
}

fn database_url(settings: &Settings) -> String {
    settings
        .file
        .database
        .as_ref()
        .and_then(|d| d.url.clone())
        .unwrap_or_else(|| config::DEFAULT_DATABASE_URL.to_owned())
}

async fn connect(url: &str) -> anyhow::Result<Db> {
    tracing::info!(database = %config::redact_url(url), "connecting");
    Db::connect(url).await
}

/// Applies pending migrations, as `serve` does, unless told not to; then
/// refuses, in one line, a schema that is still behind.
async fn migrated(db: &Db, migrate: bool) -> anyhow::Result<()> {
    if migrate {
        return db.migrate_up().await;
    }
    let pending = db
        .migration_status()
        .await?
        .iter()
        .filter(|m| !m.applied)
        .count();
    anyhow::ensure!(
        pending == 0,
        "the database has {pending} pending migration(s) and migrations are off here; run `gateway migrate up`"
    );
    Ok(())
}

/// A use-case error as one line: its message, and for a server-side failure
/// what really happened (the operator is the one who needs it).
fn cli_error(e: gateway::error::Error) -> anyhow::Error {
    match &e.source {
        Some(source) if e.is_server_error() => anyhow::anyhow!("{}: {source:#}", e.message),
        _ => anyhow::anyhow!("{}", e.message),
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Check { .. } => anyhow::bail!("`check` runs from start"),
        Command::Serve { .. } => {
            // Every section checked: a wrong one stops here, before anything
            // is served, in one line naming it.
            let config: Config = settings.config()?;
            let db = connect(&config.database_url).await?;
            if config.migrate {
                db.migrate_up().await?;
            }
            if config.demo {
                for line in gateway::demo::seed(&db).await? {
                    println!("{line}");
                }
            }
            let listen = &config.listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let addr = listener.local_addr()?;
            println!("gateway listening on http://{addr}");
            tracing::info!(%addr, "serving");
            let (close_tx, close_rx) = tokio::sync::watch::channel(false);
            let state = gateway::app::build(&config, db, close_rx).await?;
            let stopping = state.clone();
            http::serve(listener, state, async move {
                shutdown_signal().await;
                let _ = close_tx.send(true);
            })
            .await?;
            stopping.finish_jobs().await;
            tracing::info!("stopped");
        }
        Command::Jobs { json } => {
            let config: Config = settings.config()?;
            let db = connect(&config.database_url).await?;
            migrated(&db, false).await?;
            let planned = gateway::app::job_intervals(&config, db.sqlite_file().is_some());
            let jobs = gateway::jobs::list(&db, &planned).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                print!("{}", gateway::jobs::table(&jobs, db.now_micros()));
            }
        }
        Command::Config { action } => match action {
            ConfigAction::Show => {
                print!("{}", settings.show());
                settings.config()?;
            }
        },
        Command::Migrate { action } => {
            let db = connect(&database_url(&settings)).await?;
            match action {
                MigrateAction::Up => {
                    db.migrate_up().await?;
                    println!("migrations applied");
                }
                MigrateAction::Down { to, yes } => {
                    let to = match to {
                        Some(to) => to,
                        None => {
                            let applied = db.applied_after(0).await?;
                            if applied.is_empty() {
                                println!("nothing to revert");
                                return Ok(());
                            }
                            applied.get(1).map_or(0, |(v, _)| *v)
                        }
                    };
                    let losses = db.down_losses(to).await?;
                    if !losses.is_empty() && !yes {
                        for l in &losses {
                            println!(
                                "migration {} ({}) would drop {}",
                                l.version, l.description, l.what
                            );
                        }
                        anyhow::bail!(
                            "reverting to {to} drops the data above; nothing was changed \
                             (back it up, then rerun with --yes)"
                        );
                    }
                    let reverted = db.migrate_down_to(to).await?;
                    if reverted.is_empty() {
                        println!("nothing to revert");
                    }
                    for v in reverted {
                        println!("reverted migration {v}");
                    }
                }
                MigrateAction::Status => {
                    for m in db.migration_status().await? {
                        let mark = if m.applied { "applied" } else { "pending" };
                        let script = match m.unchanged {
                            Some(false) => "CHANGED since it was applied",
                            _ => "",
                        };
                        println!(
                            "{:>6}  {mark:<8} {:<24} sha384:{}  {script}",
                            m.version, m.description, m.checksum
                        );
                    }
                }
            }
        }
        Command::Backup { file } => {
            let db = connect(&database_url(&settings)).await?;
            let bytes = db.backup_to(&file).await?;
            println!("backed up to {} ({bytes} bytes)", file.display());
        }
        Command::Keys { action } => {
            let db = connect(&database_url(&settings)).await?;
            migrated(
                &db,
                settings
                    .file
                    .database
                    .as_ref()
                    .and_then(|d| d.migrate)
                    .unwrap_or(true),
            )
            .await?;
            match action {
                KeysAction::Create {
                    role,
                    store,
                    terminal,
                    label,
                } => {
                    let role = Role::parse(&role).context("unknown role")?;
                    let store = store.map(|s| StoreId::parse(&s)).transpose()?;
                    let terminal = terminal.map(|t| TerminalId::parse(&t)).transpose()?;
                    let key = keys::create(
                        &db,
                        KeySpec {
                            role,
                            store,
                            terminal,
                            label,
                        },
                    )
                    .await
                    .map_err(cli_error)?;
                    eprintln!("key id {} ({})", key.id, role.as_str());
                    println!("{}", key.token);
                }
                KeysAction::List => {
                    for k in keys::list(&db).await.map_err(cli_error)? {
                        println!(
                            "{}  {:<8} store={} terminal={} {}{}",
                            k.id,
                            k.role,
                            k.store.as_deref().unwrap_or("-"),
                            k.terminal.as_deref().unwrap_or("-"),
                            k.label.as_deref().unwrap_or(""),
                            if k.revoked { " (revoked)" } else { "" }
                        );
                    }
                }
                KeysAction::Revoke { id } => {
                    if keys::revoke(&db, &id).await.map_err(cli_error)? {
                        println!("revoked {id}");
                    } else {
                        anyhow::bail!("no active key {id}");
                    }
                }
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
