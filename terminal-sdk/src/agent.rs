//! `terminal run`: the long-running counter agent.
//!
//! It keeps its state in one directory (the SQLite file and the lock), sells
//! through its local JSON API ([`api`]) whether or not the gateway answers,
//! and talks to the gateway in tasks of their own ([`sync`]): the uploader
//! of the sales queue, the catalog refresh, the heartbeat.
//!
//! The devices have tasks of their own: the printer ([`printing`], the
//! ticket ledger and the drawer), the customer display and the scale
//! ([`counter`]), the scanner ([`scan`]); payment codes go through
//! [`pay`]; the store PC's disk and clock are watched by [`health`].

pub mod api;
pub mod config;
pub mod counter;
pub mod day;
pub mod devices;
pub mod health;
pub mod lock;
pub mod pay;
pub mod printing;
pub mod queue;
pub mod receipt;
pub mod scan;
pub mod screen;
pub mod store;
pub mod supervise;
pub mod sync;
pub mod tickets;

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{Notify, watch};

use crate::client::{ClientConfig, GatewayClient};
pub use config::Config;

/// How often the other channels' queue is asked for changes: a pushed
/// platform order shows at the counter within about this, plus one call.
const QUEUE_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs until `shutdown` resolves. Prints `terminal agent listening on
/// http://ADDR` once the local API accepts connections.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("cannot create state directory {}", cfg.state_dir.display()))?;
    let _lock = lock::lock(&cfg.state_dir).map_err(anyhow::Error::msg)?;
    let store = store::Store::open(&cfg.state_dir)
        .await
        .with_context(|| format!("opening {}", cfg.state_dir.join(store::DB_FILE).display()))?;

    let mut ccfg = ClientConfig::new(
        cfg.gateway_url.clone(),
        cfg.terminal_id.clone(),
        cfg.key.clone(),
    );
    ccfg.timeout = cfg.request_timeout;
    // The uploader has its own backoff; the client only smooths a blip.
    ccfg.attempts = 2;
    let client = GatewayClient::new(ccfg).map_err(|e| anyhow::anyhow!("gateway client: {e}"))?;

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;

    let link = Arc::new(sync::Link::default());
    let wake = Arc::new(Notify::new());
    let (closing_tx, closing) = watch::channel(false);
    let health = supervise::Tasks::default();
    let devices = devices::DeviceHealth::default();
    let uploader = {
        let (store, client, link, wake, closing) = (
            store.clone(),
            client.clone(),
            link.clone(),
            wake.clone(),
            closing.clone(),
        );
        let (retry, held_retry) = (cfg.upload_retry, cfg.held_retry);
        supervise::spawn("uploader", &health, closing.clone(), move || {
            sync::run_uploader(
                store.clone(),
                client.clone(),
                link.clone(),
                wake.clone(),
                retry,
                held_retry,
                closing.clone(),
            )
        })
    };
    let catalog = {
        let (store, client, link, closing) =
            (store.clone(), client.clone(), link.clone(), closing.clone());
        let (store_id, every) = (cfg.store_id.clone(), cfg.catalog_refresh);
        supervise::spawn("catalog", &health, closing.clone(), move || {
            sync::run_catalog(
                store.clone(),
                client.clone(),
                link.clone(),
                store_id.clone(),
                every,
                closing.clone(),
            )
        })
    };
    let heartbeat = {
        let (client, link, closing) = (client.clone(), link.clone(), closing.clone());
        let (devices, every) = (devices.clone(), cfg.heartbeat);
        supervise::spawn("heartbeat", &health, closing.clone(), move || {
            sync::run_heartbeat(
                client.clone(),
                link.clone(),
                devices.clone(),
                every,
                closing.clone(),
            )
        })
    };
    let printer = Arc::new(printing::Handle::default());
    let printing_task = {
        let setup = Arc::new(printing::Setup {
            store: store.clone(),
            port: cfg.devices.printer.clone(),
            health: devices.clone(),
            handle: printer.clone(),
            store_name: cfg.store_id.to_string(),
            terminal: cfg.terminal_id.to_string(),
        });
        let closing = closing.clone();
        supervise::spawn("printer", &health, closing.clone(), move || {
            printing::run(setup.clone(), closing.clone())
        })
    };
    let queue_task = {
        let (store, client, link, printer, closing) = (
            store.clone(),
            client.clone(),
            link.clone(),
            printer.clone(),
            closing.clone(),
        );
        supervise::spawn("queue", &health, closing.clone(), move || {
            queue::run(
                store.clone(),
                client.clone(),
                link.clone(),
                printer.clone(),
                QUEUE_POLL,
                closing.clone(),
            )
        })
    };
    let counter = Arc::new(counter::Counter::new(
        cfg.devices.scale.clone(),
        devices.clone(),
    ));
    let warnings = health::Warnings::default();
    let api_state = api::ApiState {
        store: store.clone(),
        link,
        wake,
        tasks: health.clone(),
        devices: devices.clone(),
        printer,
        client,
        terminal_id: cfg.terminal_id.to_string(),
        store_id: cfg.store_id.to_string(),
        gateway_url: cfg.gateway_url.clone(),
        counter: counter.clone(),
        warnings: warnings.clone(),
    };
    let display_task = {
        let (port, counter, devices, closing) = (
            cfg.devices.display.clone(),
            counter.clone(),
            devices.clone(),
            closing.clone(),
        );
        supervise::spawn("display", &health, closing.clone(), move || {
            counter::run_display(
                port.clone(),
                counter.clone(),
                devices.clone(),
                closing.clone(),
            )
        })
    };
    let scanner_task = {
        let (port, st, closing) = (
            cfg.devices.scanner.clone(),
            api_state.clone(),
            closing.clone(),
        );
        supervise::spawn("scanner", &health, closing.clone(), move || {
            scan::run(port.clone(), st.clone(), closing.clone())
        })
    };
    let watch_task = {
        let (dir, warnings, closing) = (cfg.state_dir.clone(), warnings.clone(), closing.clone());
        supervise::spawn("watch", &health, closing.clone(), move || {
            health::run_watch(
                dir.clone(),
                warnings.clone(),
                std::time::Duration::from_secs(2),
                closing.clone(),
            )
        })
    };
    let tasks = [
        uploader,
        catalog,
        heartbeat,
        printing_task,
        queue_task,
        display_task,
        scanner_task,
        watch_task,
    ];

    let api = api::router(api_state);
    let app = screen::guarded(api, addr);
    println!("terminal agent listening on http://{addr}");
    tracing::info!(state_dir = %cfg.state_dir.display(), gateway = %cfg.gateway_url, "agent started");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = closing_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    store.close().await;
    served.context("local API")
}
