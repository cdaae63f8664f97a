//! wechatpy, the Python WeChat Pay v2 client, drives the simulator's WeChat
//! face as it would the real service (tests/interop/wechatpy_face.py):
//! micropay, orderquery, reverse, refund and refundquery, by either order
//! number, every scenario's answer and error code, and every signed answer
//! verified with the merchant key. Skipped locally without a Python that has
//! wechatpy; fails under CI=true.

use tests::pay::{APPID, KEY, MCH_ID, PaySim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechatpy_drives_the_wechat_face() {
    // Plain HTTP, client certificates off: wechatpy is given none.
    let sim = PaySim::start(None).await;
    let env = [
        ("WECHATPAY_URL", sim.base.as_str()),
        ("WECHATPAY_APPID", APPID),
        ("WECHATPAY_MCH_ID", MCH_ID),
        ("WECHATPAY_KEY", KEY),
    ];
    let Some(stdout) = tests::run_python("wechatpy_face.py", "wechatpy, xmltodict", &env).await
    else {
        return;
    };
    for line in [
        "ok micropay success: wechatpy read the answer",
        "ok orderquery by transaction_id finds the charge, SUCCESS",
        "ok micropay waiting for the PIN: FAIL USERPAYING",
        "ok REVOKED, described",
        "ok reverse by transaction_id revoked the charge",
        "ok micropay, the customer's balance short: FAIL NOTENOUGH",
        "ok micropay, an invalid code: FAIL AUTH_CODE_INVALID",
        "ok over-refund (more than is refundable): FAIL INVALID_REQUEST",
        "ok the same out_refund_no with another amount: FAIL REFUND_FEE_MISMATCH",
        "ok a refund of a fully refunded order: FAIL ERROR",
        "ok refund by transaction_id names the order",
        "ok refundquery by transaction_id: both refunds",
        "ok the refund ends SUCCESS, with its time",
        "ok the refund ends REFUNDCLOSE, without a success time",
        "ok the refund is CHANGE",
        "ok refund, the merchant's balance short: FAIL NOTENOUGH",
        "ok an HMAC-SHA256 answer carries no sign_type",
        "ok the HMAC-SHA256 answer verifies (own HMAC)",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(line)),
            "no {line:?} in:\n{stdout}"
        );
    }
    let pass = stdout
        .lines()
        .find(|l| l.starts_with("PASS "))
        .unwrap_or_else(|| panic!("no PASS line in:\n{stdout}"));
    assert!(!stdout.lines().any(|l| l.starts_with("FAIL ")), "{stdout}");

    // The books agree with what wechatpy was told.
    let ledger = sim.ledger().await;
    let paid: Vec<_> = ledger.iter().filter(|e| e.total_fen == 2116).collect();
    assert_eq!(paid.len(), 1, "{ledger:?}");
    assert_eq!(paid[0].refunded_fen, 2116, "{pass}: {ledger:?}");
    assert_eq!(paid[0].state, "REFUND");
    let revoked = ledger.iter().filter(|e| e.state == "REVOKED").count();
    assert_eq!(revoked, 2, "{ledger:?}");
}
