//! End-to-end tests of the device drivers against the simulated devices, over
//! real pseudo-terminals. One simulator per test, on port 0 and a temp dir.

mod devices {
    pub mod harness;
}

use std::time::Duration;

use devices::harness::Sim;
use proto::device::escpos::{Align, QrLevel, Receipt};
use proto::device::scanner::{Code, LabelValue};
use serde_json::json;
use terminal_sdk::device::{ErrorKind, JobId};

fn chinese_receipt() -> Receipt {
    Receipt::new()
        .align(Align::Center)
        .bold(true)
        .line("鲜果超市 中山路店")
        .bold(false)
        .align(Align::Left)
        .line("苹果 0.355 kg × 12.80    4.54")
        .line("合计                     4.54")
        .qr("https://example.com/r/订单-42".as_bytes(), 6, QrLevel::M)
        .feed(2)
        .cut()
}

const CHINESE_TEXT: &str =
    "鲜果超市 中山路店\n苹果 0.355 kg × 12.80    4.54\n合计                     4.54\n";

/// Receipts that carry the whole sale, cut off cleanly. Anything else on the
/// paper must be a fragment that does not repeat the sale in full.
fn complete_receipts(receipts: &[serde_json::Value]) -> usize {
    let complete = |r: &serde_json::Value| {
        r["cut"] == true
            && r["text"] == CHINESE_TEXT
            && r["qr"] == json!(["https://example.com/r/订单-42"])
    };
    for r in receipts.iter().filter(|r| !complete(r)) {
        assert_ne!(
            r["text"], CHINESE_TEXT,
            "a duplicate without its cut or QR: {r}"
        );
    }
    receipts.iter().filter(|r| complete(r)).count()
}

#[tokio::test]
async fn chinese_receipt_with_qr_is_printed_as_sent() {
    let sim = Sim::start().await;
    let mut printer = sim.printer().await;
    assert_eq!(printer.print(&chinese_receipt()).await.unwrap(), JobId(1));
    let receipts = sim.receipts().await;
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert_eq!(receipts[0]["text"], CHINESE_TEXT);
    assert_eq!(receipts[0]["qr"], json!(["https://example.com/r/订单-42"]));
    assert_eq!(receipts[0]["cut"], true);
}

/// The receipt font is there, or (outside CI) the test is skipped with the
/// reason written past libtest's capture.
fn receipt_font_installed() -> bool {
    use std::io::Write;
    let path = hw_sim::devices::render::Font::configured_path();
    if let Err(e) = hw_sim::devices::render::Font::load(&path) {
        assert!(!tests::in_ci(), "{e:#}");
        let test = std::thread::current().name().unwrap_or("?").to_owned();
        let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {e:#}");
        return false;
    }
    true
}

/// `GET path` as a decoded PNG: width, height and 8-bit gray pixels.
async fn png_image(sim: &Sim, path: &str) -> (u32, u32, Vec<u8>) {
    let r = sim.raw_get(path).await;
    assert_eq!(r.status(), 200, "GET {path}");
    assert_eq!(r.headers()["content-type"], "image/png");
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut px = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut px).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    px.truncate(info.buffer_size());
    (info.width, info.height, px)
}

#[tokio::test]
async fn the_latest_receipt_is_served_as_a_png_image() {
    if !receipt_font_installed() {
        return;
    }
    let sim = Sim::start().await;
    let r = sim.raw_get("/printer/receipts/last.png").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "no_receipt");
    assert_eq!(body["detail"], "nothing has been printed yet");

    let mut printer = sim.printer().await;
    printer.print(&chinese_receipt()).await.unwrap();
    printer
        .print(&Receipt::new().line("第二张 second").cut())
        .await
        .unwrap();
    let (w, last_h, px) = png_image(&sim, "/printer/receipts/last.png").await;
    assert_eq!(w, 576, "80 mm paper at 203 dpi");
    assert!(px.iter().any(|&v| v < 128), "the image is blank");
    // The first receipt (four lines and a QR code) is the longer strip.
    let (_, first_h, px) = png_image(&sim, "/printer/receipts/1.png").await;
    assert!(first_h > last_h + 200, "{first_h} vs {last_h}");
    assert!(px.iter().filter(|&&v| v < 128).count() > 1000);
    let r = sim.raw_get("/printer/receipts/3.png").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn drawer_kick_and_sensor() {
    let sim = Sim::start().await;
    let mut printer = sim.printer().await;
    assert!(!printer.drawer_open().await.unwrap());
    printer.open_drawer().await.unwrap();
    assert!(printer.drawer_open().await.unwrap());
    assert_eq!(sim.get("/drawer").await, json!({"open": true, "kicks": 1}));
    sim.put("/drawer", json!({"open": false})).await;
    assert!(!printer.drawer_open().await.unwrap());
}

#[tokio::test]
async fn paper_end_mid_job_then_recovery_prints_exactly_one_receipt() {
    let sim = Sim::start().await;
    let mut printer = sim.printer().await;
    sim.put("/printer/state", json!({"paper_left_lines": 2}))
        .await;
    let err = printer.print(&chinese_receipt()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PaperEmpty, "{err}");
    assert_eq!(printer.pending_job(), Some(JobId(1)));
    // A new sale cannot slip in front of the unfinished receipt.
    assert_eq!(
        printer.print(&Receipt::new()).await.unwrap_err().kind(),
        ErrorKind::Busy
    );

    sim.put("/printer/state", json!({"paper": "ok"})).await;
    assert_eq!(printer.resume().await.unwrap(), Some(JobId(1)));
    assert_eq!(printer.resume().await.unwrap(), None);

    let receipts = sim.receipts().await;
    assert_eq!(complete_receipts(&receipts), 1, "{receipts:?}");
    // What was printed before the paper ran out is a torn-off fragment.
    assert!(receipts.iter().any(|r| r["cut"] == false));
}

#[tokio::test]
async fn cover_open_is_reported_before_printing() {
    let sim = Sim::start().await;
    let mut printer = sim.printer().await;
    sim.put("/printer/state", json!({"cover": "open"})).await;
    let err = printer.print(&chinese_receipt()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CoverOpen);
    sim.put("/printer/state", json!({"cover": "closed"})).await;
    printer.resume().await.unwrap();
    assert_eq!(sim.receipts().await.len(), 1);
}

#[tokio::test]
async fn unplug_during_print_then_replug_and_reprint() {
    let sim = Sim::start().await;
    let mut printer = sim.printer().await;
    // The cable comes out 40 bytes into the job and goes back in later as a
    // new pseudo-terminal (the link follows it, as a udev rule would).
    sim.put(
        "/lines/printer/faults",
        json!({"unplug_after_bytes": 12 + 40, "replug_after_ms": 300}),
    )
    .await;
    let err = printer.print(&chinese_receipt()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Offline, "{err}");
    assert_eq!(printer.resume().await.unwrap(), Some(JobId(1)));

    let receipts = sim.receipts().await;
    assert_eq!(complete_receipts(&receipts), 1, "{receipts:?}");
}

#[tokio::test]
async fn stable_weight_after_motion() {
    let sim = Sim::start().await;
    let mut scale = sim.scale().await;
    // Settling for long enough that the next request lands inside it even on
    // a loaded machine.
    sim.put("/scale", json!({"kg": "0.355", "settle_ms": 3000}))
        .await;
    assert_eq!(sim.get("/scale").await["settling"], true);
    let w = scale.read_stable().await.unwrap();
    assert_eq!(w.grams(), 355);
    assert_eq!(sim.get("/scale").await["settling"], false);
}

#[tokio::test]
async fn tare_over_capacity_and_under_zero() {
    let sim = Sim::start().await;
    let mut scale = sim.scale().await;
    sim.put("/scale", json!({"kg": "0.120"})).await;
    scale.tare().await.unwrap();
    sim.put("/scale", json!({"kg": "0.620"})).await;
    assert_eq!(scale.read_stable().await.unwrap().grams(), 500);
    sim.put("/scale", json!({"kg": "0.050"})).await;
    assert_eq!(
        scale.read_stable().await.unwrap_err().kind(),
        ErrorKind::UnderZero
    );
    scale.clear_tare().await.unwrap();
    sim.put("/scale", json!({"kg": "20"})).await;
    assert_eq!(
        scale.read_stable().await.unwrap_err().kind(),
        ErrorKind::OverCapacity
    );
}

#[tokio::test]
async fn noise_on_the_scale_line_never_yields_a_wrong_weight() {
    let sim = Sim::start().await;
    let mut scale = sim.scale().await;
    scale.stable_timeout = Duration::from_secs(10);
    sim.put("/scale", json!({"kg": "1.234"})).await;
    sim.put(
        "/lines/scale/faults",
        json!({"bit_error_rate": 0.003, "drop_rate": 0.005, "seed": 7}),
    )
    .await;
    let mut good = 0;
    for _ in 0..8 {
        match scale.read_stable().await {
            Ok(w) => {
                assert_eq!(w.grams(), 1234, "a wrong weight got through");
                good += 1;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Timeout, "{e}"),
        }
    }
    assert!(good > 0, "the line was too noisy to ever read a weight");
}

#[tokio::test]
async fn wrong_line_settings_give_no_weight_at_all() {
    let sim = Sim::start().await;
    let mut scale = sim.scale().await;
    scale.stable_timeout = Duration::from_millis(800);
    sim.put("/scale", json!({"kg": "2.000"})).await;
    sim.put("/lines/scale/faults", json!({"wrong_settings": true}))
        .await;
    assert_eq!(
        scale.read_stable().await.unwrap_err().kind(),
        ErrorKind::Timeout
    );
    sim.put("/lines/scale/faults", json!({})).await;
    // No weight could have come through garbled bytes however long it waited;
    // with the line fixed, allow a loaded machine time to settle.
    scale.stable_timeout = Duration::from_secs(20);
    assert_eq!(scale.read_stable().await.unwrap().grams(), 2000);
}

#[tokio::test]
async fn payment_code_and_weighed_goods_label_are_classified() {
    let sim = Sim::start().await;
    let mut scanner = sim.scanner().await;
    sim.post(
        "/scanner/scan",
        json!({"code": "134567890123456789", "terminator": "crlf"}),
    )
    .await;
    // 27 = weight label, PLU 01234, 355 g, check digit 0.
    sim.post(
        "/scanner/scan",
        json!({"code": "2701234003550", "aim": "E0", "terminator": "tab"}),
    )
    .await;
    sim.post("/scanner/scan", json!({"code": "284567890123456789"}))
        .await;

    let a = scanner.next().await.unwrap();
    assert!(matches!(a.code, Code::WeChatPay(_)), "{a:?}");
    let b = scanner.next().await.unwrap();
    match b.code {
        Code::StoreLabel(l) => {
            assert_eq!(l.plu, "01234");
            assert!(matches!(l.value, LabelValue::Weight(w) if w.grams() == 355));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.aim.as_deref(), Some("E0"));
    let c = scanner.next().await.unwrap();
    assert!(matches!(c.code, Code::Alipay(_)), "{c:?}");
}

#[tokio::test]
async fn display_shows_two_lines_and_comes_back_after_replug() {
    let sim = Sim::start().await;
    let mut display = sim.display().await;
    display.show("Apple 0.355kg", "4.54").await.unwrap();
    // The display does not answer: wait until the simulator has drawn it.
    sim.wait_for("/display", json!({"lines": ["Apple 0.355kg", "4.54"]}))
        .await;
    sim.put("/lines/display/faults", json!({"plugged": false}))
        .await;
    sim.put("/lines/display/faults", json!({"plugged": true}))
        .await;
    // The old line is gone: the next write notices, the one after reconnects.
    let _ = display.show("TOTAL", "12.50").await;
    display.show("TOTAL", "12.50").await.unwrap();
    sim.wait_for("/display", json!({"lines": ["TOTAL", "12.50"]}))
        .await;
}

#[tokio::test]
async fn control_api_rejects_bad_input_as_problem_json() {
    let sim = Sim::start().await;
    let r = sim.raw_put("/scale", json!({"kg": "0.3555"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid_weight");
    let r = sim.raw_put("/lines/fridge/faults", json!({})).await;
    assert_eq!(r.status(), 404);
}
