//! The simulator's Alipay face driven by the Python SDKs merchants use,
//! which nobody on this project wrote (tests/interop/alipay_face.py):
//! `python-alipay-sdk` (every call a GET with all parameters) and Alipay's
//! own `alipay-sdk-python` (common parameters in the query string,
//! `biz_content` in the form; also in GBK). Each SDK verifies every answer's
//! RSA2 signature with the simulator's Alipay key, and a client given a
//! wrong key must refuse them. The simulator runs in process on port 0;
//! afterwards its ledger is checked here too. Skipped locally without the
//! interop Python; fails under CI=true.

use std::path::PathBuf;

use hw_sim::payments::LedgerEntry;
use tests::pay::{ALIPAY_APP_ID, PaySim, alipay_credentials};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../proto/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Runs the script with `sdk` (its `import` check in `imports`) against a
/// fresh simulator; `None` when skipped. Returns the output and the ledger.
async fn drive(sdk: &str, imports: &str) -> Option<(String, Vec<LedgerEntry>)> {
    let sim = PaySim::start(Some(alipay_credentials())).await;
    let gateway = format!("{}/gateway.do", sim.base);
    let (app_private, alipay_public, wrong) = (
        fixture("alipay_test_app_private.pem"),
        fixture("alipay_test_alipay_public.pem"),
        // The app's own public key: not Alipay's, so answers fail with it.
        fixture("alipay_test_app_public.pem"),
    );
    let env = [
        ("ALIPAY_SDK", sdk),
        ("ALIPAY_GATEWAY", gateway.as_str()),
        ("ALIPAY_CONTROL", sim.base.as_str()),
        ("ALIPAY_APP_ID", ALIPAY_APP_ID),
        ("ALIPAY_APP_PRIVATE_KEY", app_private.as_str()),
        ("ALIPAY_PUBLIC_KEY", alipay_public.as_str()),
        ("ALIPAY_WRONG_PUBLIC_KEY", wrong.as_str()),
    ];
    let stdout = tests::run_python("alipay_face.py", imports, &env).await?;
    let ledger = sim.ledger().await;
    Some((stdout, ledger))
}

fn entry<'a>(ledger: &'a [LedgerEntry], order: &str) -> &'a LedgerEntry {
    ledger
        .iter()
        .find(|e| e.out_trade_no == order)
        .unwrap_or_else(|| panic!("{order} is not in the ledger: {ledger:?}"))
}

/// What both SDKs must have seen, line by line, and left in the books.
fn common_checks(stdout: &str, ledger: &[LedgerEntry], prefix: &str) {
    for line in [
        "ok pay: success",
        "ok pay: buyer_logon_id is a masked login",
        "ok pay: buyer_user_id is 2088 and 12 digits",
        "ok pay: receipt_amount 21.16",
        "ok pay: gmt_payment",
        "ok pay: fund_bill_list",
        "ok query by trade_no: finds the trade",
        "ok refund: fund_change Y",
        "ok refund: gmt_refund_pay",
        "ok refund query: REFUND_SUCCESS",
        "ok refund repeated: accepted, no money moves again",
        "ok over-refund: refused",
        "ok refund query of a refund never made: no refund data",
        "ok whole refund by trade_no without out_request_no",
        "ok pay: 10003 waiting for the buyer",
        "ok query after 10003: TRADE_SUCCESS",
        "ok cancel: action close (nothing was paid)",
        "ok query after cancel: TRADE_CLOSED",
        "ok refund query while processing: data without refund_status",
        "ok refund: merchant balance short",
        "ok wrong Alipay key: answer refused",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in:\n{stdout}"
        );
    }
    let order = |n: u32| format!("{prefix}-{n}");
    let paid = entry(ledger, &order(1));
    assert_eq!(paid.provider, "alipay");
    assert_eq!((paid.total_fen, paid.refunded_fen), (2116, 500));
    assert_eq!(
        paid.micropay_calls, 1,
        "one charge, whatever was asked after"
    );
    let whole = entry(ledger, &order(2));
    assert_eq!((whole.total_fen, whole.refunded_fen), (350, 350));
    let waited = entry(ledger, &order(3));
    assert_eq!(waited.state, "SUCCESS");
    assert!(waited.query_calls >= 1);
    let cancelled = entry(ledger, &order(4));
    assert_eq!(cancelled.state, "REVOKED");
    assert_eq!(cancelled.reverse_calls, 1);
    assert_eq!(entry(ledger, &order(6)).refunded_fen, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_alipay_sdk_drives_the_alipay_face() {
    let Some((stdout, ledger)) = drive(
        "python-alipay-sdk",
        "alipay, cryptography; from alipay import AliPay",
    )
    .await
    else {
        return;
    };
    assert!(
        stdout.contains("alipay interop (python-alipay-sdk): "),
        "{stdout}"
    );
    common_checks(&stdout, &ledger, "py");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alipays_own_sdk_drives_the_alipay_face() {
    let Some((stdout, ledger)) = drive(
        "alipay-sdk-python",
        "alipay.aop.api.DefaultAlipayClient, cryptography",
    )
    .await
    else {
        return;
    };
    assert!(
        stdout.contains("alipay interop (alipay-sdk-python): "),
        "{stdout}"
    );
    common_checks(&stdout, &ledger, "aop");
    for line in ["ok GBK: pay", "ok GBK: query"] {
        assert!(stdout.lines().any(|l| l == line), "missing {line:?}");
    }
    assert_eq!(entry(&ledger, "aop-7").total_fen, 100);
}
