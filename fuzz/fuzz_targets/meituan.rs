//! Meituan push forms (every event), platform call forms and answers, and
//! the webhook signature header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::meituan as mt;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = mt::parse_form(data) {
        let _ = mt::verify("http://gw.test/channels/meituan/new_order", &p, "secret");
        for ev in ["new_order", "cancel", "refund_apply", "refund_cancel", "delivery_status"] {
            let _ = mt::Push::parse(ev, &p);
        }
        for path in ["food/sku/stock", "order/confirm", "order/cancel"] {
            let _ = mt::Call::parse(path, &p);
        }
        // What was accepted survives a round trip.
        assert_eq!(mt::parse_form(mt::encode_form(&p).as_bytes()).as_ref(), Ok(&p));
    }
    let _ = mt::parse_answer(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = mt::parse_yuan(s);
        let _ = mt::parse_json_yuan(s);
        let _ = mt::check_timestamp(s, 1_700_000_000, 300);
        let _ = mt::webhook_verify("whsec", "1700000000", "evt", data, s);
    }
});
