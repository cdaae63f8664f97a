//! Device line benchmark: with baud-rate pacing on in the simulator, print a
//! 2 KB receipt at 115200 baud and take a stable scale reading at 9600 baud,
//! and compare the time taken with the line-rate minimum (bytes × 10 / baud).
//!
//! cargo run --release -p terminal-sdk --example devbench

use std::sync::Arc;
use std::time::{Duration, Instant};

use hw_sim::devices::{Config, Devices};
use proto::device::escpos::{ProcessId, Receipt};
use serde_json::json;
use terminal_sdk::device::{LineSettings, PortSpec, Printer, Scale, SerialConnect};

const RUNS: usize = 7;

fn receipt_of(bytes: usize) -> Receipt {
    let mut r = Receipt::new().line("鲜果超市 基准测试小票");
    let mut i = 0;
    // The job also carries an 11-byte process-id request.
    while r.as_bytes().len() + 11 < bytes {
        r = r.line(&format!("{i:04} 苹果 Apple 0.355kg x 12.80 = 4.54"));
        i += 1;
    }
    r.cut()
}

fn report(what: &str, baud: u32, bytes: usize, times: &mut [Duration]) {
    times.sort();
    let median = times[times.len() / 2];
    let min = Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(baud));
    println!(
        "{what:<34} {baud:>6} baud  {bytes:>5} bytes  line-rate minimum {:>7.1} ms  measured median {:>7.1} ms (best {:>7.1})  ratio {:.3}",
        min.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        median.as_secs_f64() / min.as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let devices = Devices::start(&Config {
        dir: dir.path().to_owned(),
        record: None,
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(Arc::clone(&devices).serve(listener, std::future::pending()));
    let http = reqwest::Client::new();
    let put =
        |path: &str, body: serde_json::Value| http.put(format!("{base}{path}")).json(&body).send();

    // Printer at 115200 baud.
    put("/lines/printer/faults", json!({"baud": 115_200}))
        .await?
        .error_for_status()?;
    let link = devices.link("printer").unwrap_or_default();
    let mut printer = Printer::new(SerialConnect::new(
        PortSpec::Path(link),
        LineSettings::printer(),
    ));
    printer.open();
    printer.claim(Duration::from_secs(5)).await?;
    printer.enable().await?;
    let receipt = receipt_of(2048);
    let job_bytes = receipt
        .clone()
        .process_id(ProcessId::for_job(1))
        .as_bytes()
        .len();
    // Before the job: 4 status requests (3 bytes out, 1 back each); after it,
    // the 7-byte process-id response.
    let exchanged = job_bytes + 4 * (3 + 1) + 7;
    let mut times = vec![];
    for _ in 0..RUNS {
        let t = Instant::now();
        printer.print(&receipt).await?;
        times.push(t.elapsed());
    }
    println!("receipt job: {job_bytes} bytes of ESC/POS");
    report(
        "print 2 KB receipt (status + job)",
        115_200,
        exchanged,
        &mut times,
    );

    // Scale at 9600 baud (7E1 is 10 bits a byte too).
    put("/lines/scale/faults", json!({"baud": 9600}))
        .await?
        .error_for_status()?;
    put("/scale", json!({"kg": "0.355"}))
        .await?
        .error_for_status()?;
    let link = devices.link("scale").unwrap_or_default();
    let mut scale = Scale::new(SerialConnect::new(
        PortSpec::Path(link),
        LineSettings::scale(),
    ));
    scale.open();
    scale.claim(Duration::from_secs(5)).await?;
    scale.enable().await?;
    // Each poll: `W` out, `STX 00.355 CR` (8 bytes) back; a reading takes
    // `confirmations` agreeing polls.
    let exchanged = scale.confirmations * (1 + 8);
    let mut times = vec![];
    for _ in 0..RUNS {
        let t = Instant::now();
        let w = scale.read_stable().await?;
        times.push(t.elapsed());
        assert_eq!(w.grams(), 355);
    }
    report(
        &format!("stable weight ({} agreeing polls)", scale.confirmations),
        9600,
        exchanged,
        &mut times,
    );
    devices.unplug_all();
    Ok(())
}
