//! Alipay JSON answers and forms, and the yuan amounts in them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::alipay;

fuzz_target!(|data: &[u8]| {
    let _ = alipay::decode_form(data);
    if let Ok(s) = std::str::from_utf8(data) {
        for method in ["alipay.trade.pay", "alipay.trade.query", "alipay.trade.cancel", "alipay.trade.refund"] {
            if let Ok(raw) = alipay::split_answer(s, method) {
                if let Ok(a) = serde_json_answer(raw.raw) {
                    for v in [&a.total_amount, &a.refund_fee].into_iter().flatten() {
                        let _ = alipay::fen(v);
                    }
                }
            }
        }
        let _ = alipay::fen(s);
        let _ = alipay::valid_timestamp(s);
    }
});

/// The answer's fields as the gateway reads them after the signature check
/// (skipped here: a fuzzer cannot forge RSA signatures).
fn serde_json_answer(raw: &str) -> Result<alipay::Answer, ()> {
    serde_json::from_str(raw).map_err(|_| ())
}
