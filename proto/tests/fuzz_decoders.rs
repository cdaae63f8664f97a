//! Every decoder that reads bytes from outside, driven with arbitrary and
//! mutated input: it must answer `Ok` or `Err`, never panic, and what it
//! accepts must be what a well-formed input means. The unit tests next to
//! each codec hold the first properties (random bytes into the device
//! decoders, SOAP envelopes, Meituan forms); these add mutations of valid
//! messages, the payment providers' answers, the webhook signature header,
//! every SOAP request and response type, and the remaining entry points.
//! `fuzz/` has `cargo fuzz` targets for the same decoders.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proto::device::{self, Decode, escpos, scale, scanner};
use proto::order::{Money, OrderAction, OrderStatus, Sku};
use proto::soap::{self, *};
use proto::{alipay, meituan, wechatpay};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig::with_cases(n)
}

/// Byte edits: overwrite, delete or insert at an index.
fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
    proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..16)
}

fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    for (at, b, op) in edits {
        if bytes.is_empty() {
            bytes.push(*b);
            continue;
        }
        let i = at.index(bytes.len());
        match op {
            0 => bytes[i] = *b,
            1 => {
                bytes.remove(i);
            }
            _ => bytes.insert(i, *b),
        }
    }
    bytes
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

// ------------------------------------------------------------------- SOAP

fn token() -> UsernameToken {
    UsernameToken {
        username: "S001-T01".into(),
        password: "gk_secret".into(),
    }
}

/// One valid envelope of every request the terminal endpoint reads.
fn valid_requests() -> Vec<String> {
    let t = token();
    vec![
        write_request(
            &t,
            &SubmitOrder {
                client_order_id: "T01-1".into(),
                lines: vec![
                    SubmitLine {
                        sku: Sku::parse("COLA").unwrap(),
                        quantity: "2".into(),
                        unit_price: Some(proto::order::Money::from_fen(350)),
                    },
                    SubmitLine {
                        sku: Sku::parse("DUCK").unwrap(),
                        quantity: "0.355".into(),
                        unit_price: None,
                    },
                ],
                note: Some("少辣".into()),
                sold_at: Some(proto::time::Timestamp::parse("2026-12-03T14:05:09+08:00").unwrap()),
                catalog_version: Some("S001:7".into()),
            },
        ),
        write_request(
            &t,
            &GetOrder {
                order_id: "0190-abc".into(),
            },
        ),
        write_request(
            &t,
            &ListOrders {
                statuses: vec![OrderStatus::Created],
                channel: Some(proto::order::Channel::ThirdParty),
                since: Some(42),
                limit: Some(10),
            },
        ),
        write_request(
            &t,
            &UpdateOrderStatus {
                order_id: "x".into(),
                action: OrderAction::Reject,
                reason: Some("sold out".into()),
            },
        ),
        write_request(
            &t,
            &GetCatalog {
                known_version: Some("3.4".into()),
            },
        ),
        write_request(
            &t,
            &Heartbeat {
                software_version: "1.2.3".into(),
                peripherals: vec![PeripheralHealth {
                    kind: PeripheralKind::Printer,
                    status: PeripheralStatus::PaperNearEnd,
                    detail: Some("roll low".into()),
                }],
            },
        ),
        write_request(
            &t,
            &PayOrder {
                order_id: "0190-abc".into(),
                auth_code: "134567890123456789".into(),
            },
        ),
        write_request(
            &t,
            &GetPayment {
                order_id: "0190-abc".into(),
            },
        ),
        write_request(
            &t,
            &RefundOrder::of_amount("0190-abc", "r-1", Money::parse("5.50").unwrap()),
        ),
        write_request(
            &t,
            &RefundOrder {
                order_id: "0190-abc".into(),
                request_id: "r-2".into(),
                amount: None,
                lines: vec![RefundLineRequest {
                    line_no: 1,
                    quantity: "1".into(),
                }],
                reason: Some("破损".into()),
                restock: true,
            },
        ),
    ]
}

/// Every response type a terminal reads, from the same bytes.
fn parse_every_response(input: &[u8]) {
    let _ = parse_response::<SubmitOrderResponse>(input);
    let _ = parse_response::<GetOrderResponse>(input);
    let _ = parse_response::<UpdateOrderStatusResponse>(input);
    let _ = parse_response::<ListOrdersResponse>(input);
    let _ = parse_response::<GetCatalogResponse>(input);
    let _ = parse_response::<HeartbeatResponse>(input);
    let _ = parse_response::<PayOrderResponse>(input);
    let _ = parse_response::<GetPaymentResponse>(input);
    let _ = parse_response::<RefundOrderResponse>(input);
}

/// A response envelope around `body` (the service's namespace bound to `tns`).
fn response_envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:tns=\"{}\"><soap:Body>{body}</soap:Body></soap:Envelope>",
        soap::NS
    )
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn mutated_requests_of_every_kind_never_panic(
        which in any::<prop::sample::Index>(),
        e in edits(),
    ) {
        let all = valid_requests();
        let xml = all[which.index(all.len())].clone().into_bytes();
        let m = mutate(xml, &e);
        let _ = parse_request(&m).map(|env| env.request());
        parse_every_response(&m);
    }

    #[test]
    fn spliced_response_fragments_never_panic(
        parts in proptest::collection::vec(prop::sample::select(vec![
            "<tns:SubmitOrderResponse>", "</tns:SubmitOrderResponse>",
            "<tns:ListOrdersResponse>", "</tns:ListOrdersResponse>",
            "<tns:GetCatalogResponse>", "</tns:GetCatalogResponse>",
            "<tns:PayOrderResponse>", "</tns:PayOrderResponse>",
            "<tns:GetPaymentResponse>", "</tns:GetPaymentResponse>",
            "<tns:RefundOrderResponse>", "</tns:RefundOrderResponse>",
            "<tns:HeartbeatResponse>", "</tns:HeartbeatResponse>",
            "<tns:order>", "</tns:order>", "<tns:orders>", "</tns:orders>",
            "<tns:line>", "</tns:line>", "<tns:quantity>", "</tns:quantity>",
            "<tns:total>", "</tns:total>", "<tns:unitPrice>", "</tns:unitPrice>",
            "<tns:cursor>", "</tns:cursor>", "<tns:replayed>", "</tns:replayed>",
            "<tns:status>", "</tns:status>", "<tns:seq>", "</tns:seq>",
            "<tns:amount>", "</tns:amount>", "<tns:charges>", "</tns:charges>",
            "<soap:Fault>", "</soap:Fault>", "<faultcode>", "</faultcode>",
            "<detail>", "</detail>", "true", "-1", "9223372036854775808",
            "1e400", "0.355", "39.90", "created", "&amp;", "&#0;", "<", ">",
        ]), 0..48)
    ) {
        let xml = response_envelope(&parts.concat());
        parse_every_response(xml.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_into_every_response(b in bytes(1024)) {
        parse_every_response(&b);
    }
}

// ------------------------------------------------------------ WeChat Pay v2

const WX_KEY: &str = "192006250b4c09247ec02edce69f6a2d";

fn wx_answer() -> wechatpay::Params {
    let mut p: wechatpay::Params = [
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("appid", "wx2421b1c4370ec43b"),
        ("mch_id", "10000100"),
        ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
        ("result_code", "SUCCESS"),
        ("out_trade_no", "0190abc-1"),
        ("transaction_id", "4200000001202611270000000001"),
        ("trade_state", "SUCCESS"),
        ("total_fee", "2116"),
        ("err_code", "USERPAYING"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    wechatpay::sign_in_place(&mut p, WX_KEY, wechatpay::SignType::HmacSha256);
    p
}

/// What the gateway does with an answer: decode, verify, read the fields.
fn read_wx(input: &[u8]) {
    if let Ok(p) = wechatpay::decode(input) {
        let _ = wechatpay::verify(&p, WX_KEY);
        let _ = wechatpay::verify_as(&p, WX_KEY, wechatpay::SignType::Md5);
        let _ = wechatpay::verify_as(&p, WX_KEY, wechatpay::SignType::HmacSha256);
        let _ = wechatpay::SignType::of(&p);
        if let Some(s) = p.get("trade_state") {
            let _ = wechatpay::TradeState::parse(s);
        }
        // Re-encoding what was accepted gives the same parameters.
        let again = wechatpay::decode(wechatpay::encode(&p).as_bytes());
        assert_eq!(again.as_ref(), Ok(&p), "{p:?}");
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn wechat_arbitrary_bytes_never_panic(b in bytes(1024)) {
        read_wx(&b);
    }

    #[test]
    fn wechat_mutated_answers_never_panic(e in edits()) {
        let xml = wechatpay::encode(&wx_answer()).into_bytes();
        read_wx(&mutate(xml, &e));
    }

    #[test]
    fn wechat_round_trips(p in proptest::collection::btree_map("[a-z_]{1,12}", "\\PC{0,24}", 0..20)) {
        let p: BTreeMap<String, String> = p;
        let back = wechatpay::decode(wechatpay::encode(&p).as_bytes());
        // XML cannot carry every character (e.g. most control characters):
        // whatever comes back must be what was sent.
        if let Ok(back) = back {
            prop_assert_eq!(back, p);
        }
    }

    #[test]
    fn wechat_codes_never_panic(s in "\\PC{0,40}") {
        let _ = wechatpay::parse_code(&s);
        let _ = wechatpay::mask(&s);
        let _ = wechatpay::CodeKind::parse(&s);
        let _ = wechatpay::TradeState::parse(&s);
    }
}

#[test]
fn a_signed_wechat_answer_verifies_and_a_changed_one_does_not() {
    let p = wx_answer();
    let xml = wechatpay::encode(&p);
    let back = wechatpay::decode(xml.as_bytes()).unwrap();
    assert!(wechatpay::verify_as(
        &back,
        WX_KEY,
        wechatpay::SignType::HmacSha256
    ));
    let changed = xml.replace("2116", "2117");
    let back = wechatpay::decode(changed.as_bytes()).unwrap();
    assert!(!wechatpay::verify_as(
        &back,
        WX_KEY,
        wechatpay::SignType::HmacSha256
    ));
}

// ------------------------------------------------------------------ Alipay

const ALIPAY_PRIVATE: &str = include_str!("fixtures/alipay_test_alipay_private.pem");
const ALIPAY_PUBLIC: &str = include_str!("fixtures/alipay_test_alipay_public.pem");
const PAY: &str = "alipay.trade.pay";

fn alipay_keys() -> &'static (alipay::PublicKey, String) {
    use std::sync::OnceLock;
    static K: OnceLock<(alipay::PublicKey, String)> = OnceLock::new();
    K.get_or_init(|| {
        let private = alipay::PrivateKey::from_pem(ALIPAY_PRIVATE).unwrap();
        let answer = alipay::Answer {
            trade_no: Some("2026112722001".into()),
            out_trade_no: Some("0190abc-1".into()),
            total_amount: Some("21.16".into()),
            trade_status: Some("TRADE_SUCCESS".into()),
            ..alipay::Answer::new(alipay::code::SUCCESS, "Success")
        };
        let body = alipay::signed_answer(PAY, &answer, &private).unwrap();
        (alipay::PublicKey::from_pem(ALIPAY_PUBLIC).unwrap(), body)
    })
}

/// What the gateway does with an answer body.
fn read_alipay(body: &str) {
    let (key, _) = alipay_keys();
    for method in [
        PAY,
        "alipay.trade.query",
        "alipay.trade.cancel",
        "alipay.trade.refund",
    ] {
        let _ = alipay::split_answer(body, method);
        if let Ok(a) = alipay::open_answer(body, method, key) {
            let _ = a.is_success();
            for amount in [&a.total_amount, &a.refund_fee].into_iter().flatten() {
                let _ = alipay::fen(amount);
            }
            if let Some(s) = &a.trade_status {
                let _ = alipay::TradeStatus::parse(s);
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn alipay_arbitrary_text_never_panics(s in "\\PC{0,400}") {
        read_alipay(&s);
        let _ = alipay::decode_form(s.as_bytes());
        let _ = alipay::fen(&s);
        let _ = alipay::valid_timestamp(&s);
    }

    #[test]
    fn alipay_mutated_answers_never_panic(e in edits()) {
        let (_, body) = alipay_keys();
        let m = mutate(body.clone().into_bytes(), &e);
        if let Ok(s) = std::str::from_utf8(&m) {
            read_alipay(s);
        }
    }

    #[test]
    fn alipay_arbitrary_form_bytes_never_panic(b in bytes(512)) {
        let _ = alipay::decode_form(&b);
    }

    #[test]
    fn alipay_fen_round_trips(fen in 0i64..=proto::order::MAX_FEN) {
        prop_assert_eq!(alipay::fen(&alipay::yuan(fen)), Some(fen));
    }
}

#[test]
fn the_signed_alipay_answer_opens() {
    let (key, body) = alipay_keys();
    let a = alipay::open_answer(body, PAY, key).unwrap();
    assert_eq!(a.total_amount.as_deref(), Some("21.16"));
    let tampered = body.replace("21.16", "21.17");
    assert!(alipay::open_answer(&tampered, PAY, key).is_err());
}

// --------------------------------------------------------- Meituan pushes

const MT_URL: &str = "http://127.0.0.1:8080/channels/meituan/new_order";
const MT_SECRET: &str = "mt-secret";

fn new_order_form() -> String {
    let detail =
        r#"[{"app_food_code":"COLA","food_name":"可口可乐","quantity":2,"price":3.5,"unit":"份"}]"#;
    let mut p: Vec<(String, String)> = [
        ("app_id", "mt-app"),
        ("timestamp", "1700000000"),
        ("order_id", "27061900338318741"),
        ("app_poi_code", "S001"),
        ("day_seq", "3"),
        ("ctime", "1700000000"),
        ("caution", "少辣"),
        ("recipient_name", "张三"),
        ("recipient_phone", "13800000000"),
        ("recipient_address", "人民路1号"),
        ("shipping_fee", "5.0"),
        ("total", "12.0"),
        ("original_price", "12.0"),
        ("poi_receive_amount", "7.0"),
        ("detail", detail),
        ("extras", "[]"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let sig = meituan::sign(MT_URL, &p, MT_SECRET);
    p.push(("sig".into(), sig));
    meituan::encode_form(&p)
}

const EVENTS: [&str; 6] = [
    "new_order",
    "cancel",
    "refund_apply",
    "refund_cancel",
    "delivery_status",
    "bogus",
];

/// What the gateway's adapter does with a push body.
fn read_push(body: &[u8]) {
    if let Ok(p) = meituan::parse_form(body) {
        let _ = meituan::verify(MT_URL, &p, MT_SECRET);
        if let Some(ts) = meituan::param(&p, "timestamp") {
            let _ = meituan::check_timestamp(ts, 1_700_000_000, 300);
        }
        for ev in EVENTS {
            let _ = meituan::Push::parse(ev, &p);
        }
        for path in ["food/sku/stock", "order/confirm", "order/cancel"] {
            let _ = meituan::Call::parse(path, &p);
        }
    }
    let _ = meituan::parse_answer(body);
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn mutated_new_order_forms_never_panic(e in edits()) {
        read_push(&mutate(new_order_form().into_bytes(), &e));
    }

    #[test]
    fn mutated_detail_json_never_panics(e in edits()) {
        // Mutate inside the `detail` JSON, re-encoded, so the JSON parser
        // (not the form decoder) sees the damage.
        let form = new_order_form();
        let mut p = meituan::parse_form(form.as_bytes()).unwrap();
        for (k, v) in p.iter_mut() {
            if k == "detail" {
                let m = mutate(v.clone().into_bytes(), &e);
                *v = String::from_utf8_lossy(&m).into_owned();
            }
        }
        read_push(meituan::encode_form(&p).as_bytes());
    }

    #[test]
    fn webhook_signature_headers_never_panic(
        ts in "\\PC{0,20}", id in "\\PC{0,20}", sig in "\\PC{0,200}", body in bytes(256)
    ) {
        let _ = meituan::webhook_verify("whsec", &ts, &id, &body, &sig);
        let _ = meituan::check_timestamp(&ts, 1_700_000_000, 300);
    }

    #[test]
    fn a_webhook_signature_verifies_only_its_body(body in bytes(256), flip in any::<prop::sample::Index>()) {
        let sig = meituan::webhook_sign("whsec", 1_700_000_000, "evt_1", &body);
        prop_assert_eq!(meituan::webhook_verify("whsec", 1_700_000_000, "evt_1", &body, &sig), Ok(()));
        let mut other = body.clone();
        if other.is_empty() {
            other.push(0);
        } else {
            let i = flip.index(other.len());
            other[i] ^= 1;
        }
        prop_assert!(meituan::webhook_verify("whsec", 1_700_000_000, "evt_1", &other, &sig).is_err());
    }
}

#[test]
fn the_valid_new_order_form_verifies_and_parses() {
    let form = new_order_form();
    let p = meituan::parse_form(form.as_bytes()).unwrap();
    assert_eq!(meituan::verify(MT_URL, &p, MT_SECRET), Ok(()));
    assert!(meituan::Push::parse("new_order", &p).is_ok());
}

// ----------------------------------------------------------------- devices

/// Runs a `Decode` loop over `buf` as a driver does: every step consumes at
/// least one byte and never more than is there.
fn drain<T>(mut buf: &[u8], decode: impl Fn(&[u8]) -> Decode<T>) {
    loop {
        match decode(buf) {
            Decode::Done(_, n) | Decode::Invalid { skip: n, .. } => {
                assert!(n > 0 && n <= buf.len(), "consumed {n} of {}", buf.len());
                buf = &buf[n..];
            }
            _ => return,
        }
    }
}

/// Bytes that look like device traffic: ESC/GS/STX/CR and digits are
/// likely, so the decoders get past their first byte.
fn device_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => prop::sample::select(vec![
                0x1B, 0x1D, 0x10, 0x04, 0x02, 0x03, 0x0D, 0x0A, 0x0C, 0x1F, 0x37, 0x22,
                b'0', b'1', b'9', b'.', b'-', b'W', b'Z', b'T', b'S', b'!', b'a', b'(', b'k',
            ]),
            1 => any::<u8>(),
        ],
        0..512,
    )
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn escpos_printer_side_never_panics(b in device_bytes()) {
        drain(&b, escpos::decode);
        drain(&b, escpos::decode_reply);
        let _ = escpos::decode_gb18030(&b);
        for byte in &b {
            let _ = escpos::is_status_byte(*byte);
            for kind in [
                escpos::StatusKind::Printer,
                escpos::StatusKind::OfflineCause,
                escpos::StatusKind::ErrorCause,
                escpos::StatusKind::PaperSensor,
            ] {
                let _ = escpos::Status::parse(kind, *byte);
            }
        }
    }

    #[test]
    fn scale_never_panics(b in device_bytes()) {
        drain(&b, scale::decode_reply);
        drain(&b, scale::decode_command);
    }

    #[test]
    fn scanner_never_panics(b in device_bytes()) {
        drain(&b, scanner::decode);
        if let Ok(s) = std::str::from_utf8(&b) {
            let _ = scanner::classify(s);
            let _ = scanner::check_digit_ok(s);
        }
    }

    #[test]
    fn display_never_panics(b in device_bytes()) {
        drain(&b, device::display::decode);
    }

    #[test]
    fn store_labels_never_panic(digits in "[0-9]{0,20}", prefix in "2[0-9]") {
        let code = format!("{prefix}{digits}");
        let _ = scanner::classify(&code);
        let _ = scanner::check_digit_ok(&code);
    }

    #[test]
    fn milli_never_panics_and_round_trips(s in "\\PC{0,20}", n in -999_999_999_999i64..=999_999_999_999) {
        let _ = device::parse_milli(&s);
        let sign = if n < 0 { "-" } else { "" };
        let text = format!("{sign}{}.{:03}", n.unsigned_abs() / 1000, n.unsigned_abs() % 1000);
        prop_assert_eq!(device::parse_milli(&text), Some(n));
    }
}
