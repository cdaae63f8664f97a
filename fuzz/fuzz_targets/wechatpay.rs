//! WeChat Pay v2 XML answers: decode, verify, read, and re-encode what was
//! accepted (it must decode to the same parameters).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::wechatpay::{self, SignType};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = wechatpay::decode(data) {
        let _ = wechatpay::verify_as(&p, "key", SignType::Md5);
        let _ = wechatpay::verify_as(&p, "key", SignType::HmacSha256);
        if let Some(s) = p.get("trade_state") {
            let _ = wechatpay::TradeState::parse(s);
        }
        let again = wechatpay::decode(wechatpay::encode(&p).as_bytes());
        assert_eq!(again.as_ref(), Ok(&p));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = wechatpay::parse_code(s);
        let _ = wechatpay::mask(s);
    }
});
