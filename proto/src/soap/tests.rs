use proptest::prelude::*;

use super::*;
use crate::order::{Money, OrderAction, OrderStatus, Sku};

fn token() -> UsernameToken {
    UsernameToken {
        username: "S001-T01".into(),
        password: "gk_secret&<".into(),
    }
}

fn submit() -> SubmitOrder {
    SubmitOrder {
        client_order_id: "T01-20261127-0001".into(),
        lines: vec![
            SubmitLine {
                sku: Sku::parse("COLA").unwrap(),
                quantity: "2".into(),
                unit_price: None,
            },
            SubmitLine {
                sku: Sku::parse("DUCK-NECK").unwrap(),
                quantity: "0.355".into(),
                unit_price: None,
            },
        ],
        note: Some("少辣 <no> & \"spicy\"".into()),
        sold_at: None,
        catalog_version: None,
    }
}

/// The same sale, made at the counter while the gateway was away.
fn happened() -> SubmitOrder {
    let mut m = submit();
    m.sold_at = Some(crate::time::Timestamp::parse("2026-11-27T19:46:45.5+08:00").unwrap());
    m.catalog_version = Some("S001:42".into());
    m.lines[0].unit_price = Some(Money::from_fen(350));
    m
}

#[test]
fn every_request_round_trips_with_its_token() {
    let requests = [
        Request::SubmitOrder(submit()),
        Request::SubmitOrder(happened()),
        Request::GetOrder(GetOrder {
            order_id: "0190-abc".into(),
        }),
        Request::ListOrders(ListOrders {
            statuses: vec![OrderStatus::Created, OrderStatus::Accepted],
            channel: Some(crate::order::Channel::ThirdParty),
            since: Some(42),
            limit: Some(10),
        }),
        Request::ListOrders(ListOrders::default()),
        Request::UpdateOrderStatus(UpdateOrderStatus {
            order_id: "x".into(),
            action: OrderAction::Reject,
            reason: Some("sold out".into()),
        }),
        Request::GetCatalog(GetCatalog {
            known_version: Some("3.4".into()),
        }),
        Request::Heartbeat(Heartbeat {
            software_version: "1.2.3".into(),
            peripherals: vec![PeripheralHealth {
                kind: PeripheralKind::Printer,
                status: PeripheralStatus::PaperNearEnd,
                detail: Some("roll low".into()),
            }],
        }),
        Request::PayOrder(PayOrder {
            order_id: "0190-abc".into(),
            auth_code: "134567890123456789".into(),
        }),
        Request::GetPayment(GetPayment {
            order_id: "0190-abc".into(),
        }),
        Request::RefundOrder(RefundOrder::of_amount(
            "0190-abc",
            "退款 r-1",
            Money::parse("5.5").unwrap(),
        )),
        Request::RefundOrder(RefundOrder {
            order_id: "0190-abc".into(),
            request_id: "r-2".into(),
            amount: None,
            lines: vec![
                RefundLineRequest {
                    line_no: 1,
                    quantity: "1".into(),
                },
                RefundLineRequest {
                    line_no: 3,
                    quantity: "0.250".into(),
                },
            ],
            reason: Some("洒了 & <cold>".into()),
            restock: true,
        }),
        Request::TenderCash(TenderCash {
            order_id: "0190-abc".into(),
            tendered: Money::parse("100").unwrap(),
        }),
    ];
    for req in requests {
        let xml = match &req {
            Request::SubmitOrder(m) => write_request(&token(), m),
            Request::GetOrder(m) => write_request(&token(), m),
            Request::ListOrders(m) => write_request(&token(), m),
            Request::UpdateOrderStatus(m) => write_request(&token(), m),
            Request::GetCatalog(m) => write_request(&token(), m),
            Request::Heartbeat(m) => write_request(&token(), m),
            Request::PayOrder(m) => write_request(&token(), m),
            Request::GetPayment(m) => write_request(&token(), m),
            Request::RefundOrder(m) => write_request(&token(), m),
            Request::TenderCash(m) => write_request(&token(), m),
        };
        let env = parse_request(xml.as_bytes()).unwrap();
        assert_eq!(env.token.clone().unwrap(), Some(token()));
        assert_eq!(env.request().unwrap(), req, "{xml}");
    }
}

fn order() -> crate::order::Order {
    use crate::order::*;
    let unit_price = Money::parse("39.90").unwrap();
    let q = Quantity::parse(Unit::Kg, "0.355").unwrap();
    Order {
        id: "0190a".into(),
        store_id: StoreId::parse("S001").unwrap(),
        channel: Channel::Terminal,
        platform: None,
        channel_order_id: Some("c-1".into()),
        display_no: 7,
        business_day: "2026-11-27".into(),
        status: OrderStatus::Rejected,
        payment_status: PaymentStatus::Unpaid,
        lines: vec![OrderLine {
            sku: Sku::parse("DUCK").unwrap(),
            name: "鸭脖 & wings".into(),
            unit: Unit::Kg,
            quantity: q,
            unit_price,
            line_total: line_total(unit_price, q).unwrap(),
        }],
        total: Money::parse("14.16").unwrap(),
        currency: CURRENCY,
        note: Some("n".into()),
        created_at: "2026-11-27T19:46:45.123456+08:00".into(),
        updated_at: "2026-11-27T19:47:00+08:00".into(),
        seq: 12,
        history: vec![
            StatusChange {
                at: "2026-11-27T19:46:45.123456+08:00".into(),
                by: "terminal:S001-T01".into(),
                from: None,
                to: OrderStatus::Created,
                reason: None,
            },
            StatusChange {
                at: "2026-11-27T19:47:00+08:00".into(),
                by: "terminal:S001-T01".into(),
                from: Some(OrderStatus::Created),
                to: OrderStatus::Rejected,
                reason: Some("sold out".into()),
            },
        ],
        attention: Vec::new(),
        sold_at: None,
    }
}

#[test]
fn responses_round_trip() {
    let r = SubmitOrderResponse {
        replayed: true,
        order: order(),
    };
    assert_eq!(
        parse_response::<SubmitOrderResponse>(write_response(&r).as_bytes()).unwrap(),
        r
    );
    let l = ListOrdersResponse {
        orders: vec![order(), order()],
        cursor: 99,
        has_more: false,
    };
    assert_eq!(
        parse_response::<ListOrdersResponse>(write_response(&l).as_bytes()).unwrap(),
        l
    );
    let c = GetCatalogResponse {
        store_id: crate::order::StoreId::parse("S001").unwrap(),
        store_name: "Store".into(),
        version: "3.4".into(),
        unchanged: false,
        items: vec![CatalogItem {
            sku: Sku::parse("DUCK").unwrap(),
            name: "Duck".into(),
            unit: crate::order::Unit::Kg,
            price: Money::parse("39.90").unwrap(),
            list_price: Money::parse("42").unwrap(),
            on_hand: crate::order::Quantity::parse_stock(crate::order::Unit::Kg, "0").unwrap(),
            reserved: crate::order::Quantity::parse_stock(crate::order::Unit::Kg, "0").unwrap(),
            sellable: crate::order::Quantity::parse_stock(crate::order::Unit::Kg, "0").unwrap(),
            available: false,
            listed: true,
            snoozed_until: None,
            barcodes: vec![crate::order::Barcode::parse("4006381333931").unwrap()],
        }],
    };
    assert_eq!(
        parse_response::<GetCatalogResponse>(write_response(&c).as_bytes()).unwrap(),
        c
    );
    let h = HeartbeatResponse {
        received_at: "2026-11-27T19:47:00+08:00".into(),
    };
    assert_eq!(
        parse_response::<HeartbeatResponse>(write_response(&h).as_bytes()).unwrap(),
        h
    );
    // The wrong response element is malformed, not a silent success.
    assert!(matches!(
        parse_response::<GetOrderResponse>(write_response(&h).as_bytes()),
        Err(ResponseError::Malformed(_))
    ));
}

fn payment(state: ChargeState) -> Payment {
    Payment {
        id: "0123456789abcdef01234567-1".into(),
        order_id: "0190a".into(),
        attempt: 1,
        provider: "wechatpay".into(),
        code_kind: "wechatpay".into(),
        auth_code: "13******6789".into(),
        state,
        failure_code: Some("insufficient_balance".into()),
        failure_reason: Some("余额不足 & <more>".into()),
        amount: Money::parse("21.16").unwrap(),
        refunded: Money::parse("5").unwrap(),
        transaction_id: None,
        created_at: "2026-11-27T19:46:45.123456+08:00".into(),
        updated_at: "2026-11-27T19:47:00+08:00".into(),
        exchanges: vec![ProviderExchange {
            at: "2026-11-27T19:46:45.123456+08:00".into(),
            call: "micropay".into(),
            outcome: "declined".into(),
            detail: Some("NOTENOUGH".into()),
        }],
    }
}

#[test]
fn payment_messages_round_trip() {
    let p = PayOrderResponse {
        charge: Payment {
            exchanges: Vec::new(),
            ..payment(ChargeState::Failed)
        },
    };
    let xml = write_response(&p);
    assert!(xml.contains("<tns:amount>21.16</tns:amount>"), "{xml}");
    assert!(xml.contains("<tns:refunded>5.00</tns:refunded>"), "{xml}");
    assert_eq!(
        parse_response::<PayOrderResponse>(xml.as_bytes()).unwrap(),
        p
    );
    let refund = PaymentRefund {
        id: "0123456789abcdef01234567-1R1".into(),
        charge_id: "0123456789abcdef01234567-1".into(),
        order_id: "0190a".into(),
        request_id: "r-1".into(),
        state: RefundState::Succeeded,
        failure_code: None,
        failure_reason: None,
        amount: Money::parse("5.00").unwrap(),
        created_at: "2026-11-27T19:48:00+08:00".into(),
        updated_at: "2026-11-27T19:48:00+08:00".into(),
        reason: None,
        restock: false,
        lines: Vec::new(),
    };
    // A refund of an amount writes none of the newer elements.
    let xml = write_response(&RefundOrderResponse {
        refund: refund.clone(),
    });
    for absent in ["reason", "restock", "line"] {
        assert!(!xml.contains(&format!("<tns:{absent}>")), "{xml}");
    }
    let by_lines = PaymentRefund {
        id: "0123456789abcdef01234567-1R2".into(),
        request_id: "r-2".into(),
        amount: Money::parse("10.58").unwrap(),
        reason: Some("洒了 & <cold>".into()),
        restock: true,
        lines: vec![RefundedLine {
            line_no: 1,
            sku: "LATTE".into(),
            quantity: "1".into(),
            amount: Money::parse("10.58").unwrap(),
        }],
        ..refund.clone()
    };
    let g = GetPaymentResponse {
        order_id: "0190a".into(),
        payment_status: crate::order::PaymentStatus::PartiallyRefunded,
        charges: vec![
            payment(ChargeState::Reversed),
            payment(ChargeState::Succeeded),
        ],
        refunds: vec![refund.clone(), by_lines.clone()],
        prepaid: None,
    };
    let back = parse_response::<GetPaymentResponse>(write_response(&g).as_bytes()).unwrap();
    assert_eq!(back, g);
    assert_eq!(
        back.paid_charge().map(|c| c.state),
        Some(ChargeState::Succeeded)
    );
    let empty = GetPaymentResponse {
        order_id: "0190a".into(),
        payment_status: crate::order::PaymentStatus::Unpaid,
        charges: Vec::new(),
        refunds: Vec::new(),
        prepaid: Some(Prepaid {
            provider: "wechat_miniprogram".into(),
            transaction_id: "4200001234".into(),
            amount: Money::parse("21.16").unwrap(),
        }),
    };
    assert_eq!(
        parse_response::<GetPaymentResponse>(write_response(&empty).as_bytes()).unwrap(),
        empty
    );
    for refund in [refund, by_lines] {
        let r = RefundOrderResponse { refund };
        assert_eq!(
            parse_response::<RefundOrderResponse>(write_response(&r).as_bytes()).unwrap(),
            r
        );
    }
    assert!(ChargeState::Reversed.is_final() && !ChargeState::Pending.is_final());
}

#[test]
fn refund_requests_are_checked_like_rest() {
    let body = |amount: &str, request: &str| {
        envelope(
            "",
            &format!(
                "<t:RefundOrder xmlns:t=\"{NS}\"><t:orderId>o1</t:orderId><t:requestId>{request}</t:requestId><t:amount>{amount}</t:amount></t:RefundOrder>"
            ),
        )
    };
    let code = |xml: String| {
        parse_request(xml.as_bytes())
            .unwrap()
            .request()
            .unwrap_err()
            .code
    };
    assert_eq!(code(body("1.234", "r-1")), "invalid_money");
    assert_eq!(code(body("-1", "r-1")), "invalid_money");
    assert_eq!(code(body("abc", "r-1")), "invalid_money");
    assert_eq!(code(body("1.00", "")), "invalid_request_id");
    assert_eq!(code(body("1.00", &"x".repeat(65))), "invalid_request_id");
    let ok = parse_request(body("1.5", "r-1").as_bytes())
        .unwrap()
        .request()
        .unwrap();
    assert_eq!(
        ok,
        Request::RefundOrder(RefundOrder::of_amount("o1", "r-1", Money::from_fen(150)))
    );
    // Lines instead of an amount; the gateway decides what combination is
    // valid, the codec only what is well-formed.
    let lines = |inner: &str| {
        envelope(
            "",
            &format!(
                "<t:RefundOrder xmlns:t=\"{NS}\"><t:orderId>o1</t:orderId><t:requestId>r-1</t:requestId>{inner}</t:RefundOrder>"
            ),
        )
    };
    let ok = parse_request(
        lines("<t:line><t:lineNo>2</t:lineNo><t:quantity>0.250</t:quantity></t:line><t:reason> spilt </t:reason><t:restock>1</t:restock>").as_bytes(),
    )
    .unwrap()
    .request()
    .unwrap();
    assert_eq!(
        ok,
        Request::RefundOrder(RefundOrder {
            order_id: "o1".into(),
            request_id: "r-1".into(),
            amount: None,
            lines: vec![RefundLineRequest {
                line_no: 2,
                quantity: "0.250".into()
            }],
            reason: Some("spilt".into()),
            restock: true,
        })
    );
    let no_amount = parse_request(lines("").as_bytes())
        .unwrap()
        .request()
        .unwrap();
    assert_eq!(
        no_amount,
        Request::RefundOrder(RefundOrder {
            order_id: "o1".into(),
            request_id: "r-1".into(),
            ..RefundOrder::default()
        })
    );
    let one = "<t:line><t:lineNo>1</t:lineNo><t:quantity>1</t:quantity></t:line>";
    assert_eq!(
        code(lines(
            "<t:line><t:lineNo>one</t:lineNo><t:quantity>1</t:quantity></t:line>"
        )),
        "invalid_request"
    );
    assert_eq!(
        code(lines("<t:line><t:lineNo>1</t:lineNo></t:line>")),
        "invalid_request"
    );
    assert_eq!(code(lines("<t:restock>yes</t:restock>")), "invalid_request");
    assert_eq!(code(lines(&one.repeat(101))), "invalid_refund");
    assert!(
        parse_request(lines(&one.repeat(100)).as_bytes())
            .unwrap()
            .request()
            .is_ok()
    );
}

#[test]
fn a_sale_that_already_happened_carries_its_time_version_and_prices() {
    let xml = write_request(&token(), &happened());
    assert!(
        xml.contains("<soldAt>2026-11-27T19:46:45.5+08:00</soldAt>")
            || xml.contains(":soldAt>2026-11-27T19:46:45.5+08:00</"),
        "{xml}"
    );
    assert!(
        xml.contains("3.50</"),
        "the unit price as decimal text: {xml}"
    );
    let Ok(Request::SubmitOrder(m)) = parse_request(xml.as_bytes()).unwrap().request() else {
        panic!("not a SubmitOrder");
    };
    assert_eq!(
        m.sold_at.as_ref().map(|t| t.micros()),
        Some(1_795_780_005_500_000)
    );
    assert_eq!(m.lines[0].unit_price, Some(Money::from_fen(350)));
    assert_eq!(m.lines[1].unit_price, None);

    let body = |inner: &str, line_extra: &str| {
        envelope(
            "",
            &format!(
                "<t:SubmitOrder><t:clientOrderId>c-1</t:clientOrderId><t:line><t:sku>COLA</t:sku><t:quantity>2</t:quantity>{line_extra}</t:line>{inner}</t:SubmitOrder>"
            ),
        )
    };
    let at = "<t:soldAt>2026-11-27T19:46:45+08:00</t:soldAt>";
    assert_eq!(code_of(&body(at, "<t:unitPrice>3.5</t:unitPrice>")), "ok");
    assert_eq!(
        code_of(&body(
            &format!("{at}<t:catalogVersion>v9</t:catalogVersion>"),
            ""
        )),
        "ok"
    );
    // An old request, none of the new fields: as before.
    assert_eq!(code_of(&body("", "")), "ok");
    // Bad values are refused with the code of the value.
    for bad_time in [
        "2026-11-27",
        "2026-11-27T19:46:45",
        "2026-02-30T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "",
    ] {
        let t = format!("<t:soldAt>{bad_time}</t:soldAt>");
        assert_eq!(code_of(&body(&t, "")), "invalid_time", "{bad_time}");
    }
    for bad_price in ["-1", "3.505", "1e3", "99999999999999", ""] {
        let p = format!("<t:unitPrice>{bad_price}</t:unitPrice>");
        assert_eq!(code_of(&body(at, &p)), "invalid_money", "{bad_price}");
    }
    let long = format!(
        "{at}<t:catalogVersion>{}</t:catalogVersion>",
        "v".repeat(65)
    );
    assert_eq!(code_of(&body(&long, "")), "invalid_request");
    // A price or a version says the sale happened: without its time it is refused.
    assert_eq!(
        code_of(&body("", "<t:unitPrice>3.50</t:unitPrice>")),
        "invalid_request"
    );
    assert_eq!(
        code_of(&body("<t:catalogVersion>v9</t:catalogVersion>", "")),
        "invalid_request"
    );
    assert_eq!(code_of(&body(&format!("{at}{at}"), "")), "invalid_request");
}

#[test]
fn faults_round_trip_with_their_code() {
    for f in [
        Fault::client("out_of_stock", "not enough COLA"),
        Fault::server("internal", "internal error"),
        Fault::new(FaultKind::VersionMismatch, "soap_version_mismatch", "1.2"),
    ] {
        let got = parse_response::<GetOrderResponse>(f.to_envelope().as_bytes());
        assert_eq!(got, Err(ResponseError::Fault(f)));
    }
}

fn envelope(header: &str, body: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:smart-terminal:gateway:v1"><soapenv:Header>{header}</soapenv:Header><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
    )
}

fn code_of(xml: &str) -> String {
    match parse_request(xml.as_bytes()) {
        Err(f) => f.code,
        Ok(env) => match (env.token.clone(), env.request()) {
            (Err(f), _) => f.code,
            (_, Err(f)) => f.code,
            (Ok(_), Ok(_)) => "ok".into(),
        },
    }
}

#[test]
fn bad_envelopes_get_the_right_fault() {
    let ok_body = "<t:GetOrder><t:orderId>1</t:orderId></t:GetOrder>";
    let cases = [
        (envelope("", ok_body), "ok"),
        (envelope("", ""), "unknown_operation"),
        (envelope("", "<t:DeleteEverything/>"), "unknown_operation"),
        (
            envelope("", "<GetOrder><orderId>1</orderId></GetOrder>"),
            "unknown_operation",
        ),
        (
            envelope("", "<t:GetOrder><t:orderID>1</t:orderID></t:GetOrder>"),
            "invalid_request",
        ),
        (
            envelope("", "<t:GetOrder><orderId>1</orderId></t:GetOrder>"),
            "invalid_request",
        ),
        (envelope("", "<t:GetOrder/>"), "invalid_request"),
        (
            envelope("", &format!("{ok_body}{ok_body}")),
            "invalid_request",
        ),
        (
            envelope(
                r#"<x:Trace xmlns:x="urn:x" soapenv:mustUnderstand="1"/>"#,
                ok_body,
            ),
            "must_understand",
        ),
        (
            envelope(r#"<x:Trace xmlns:x="urn:x"/>"#, ok_body),
            "ok",
        ),
        (
            r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>"#
                .to_owned(),
            "soap_version_mismatch",
        ),
        ("<html/>".to_owned(), "not_soap"),
        (
            envelope(
                r#"<w:Security xmlns:w="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><w:UsernameToken><w:Username>a</w:Username><w:Password Type="urn:x#PasswordDigest">b</w:Password></w:UsernameToken></w:Security>"#,
                ok_body,
            ),
            "unauthorized",
        ),
        (
            envelope(
                "",
                "<t:ListOrders><t:status>lost</t:status></t:ListOrders>",
            ),
            "invalid_status",
        ),
        (
            envelope("", "<t:ListOrders><t:since>-1</t:since></t:ListOrders>"),
            "invalid_cursor",
        ),
        (
            envelope(
                "",
                "<t:SubmitOrder><t:clientOrderId>a</t:clientOrderId><t:line><t:sku>a b</t:sku><t:quantity>1</t:quantity></t:line></t:SubmitOrder>",
            ),
            "invalid_sku",
        ),
    ];
    for (xml, want) in cases {
        assert_eq!(code_of(&xml), want, "{xml}");
    }
}

#[test]
fn wsdl_is_well_formed_and_names_every_operation() {
    let w = wsdl::wsdl("http://127.0.0.1:8080/soap/terminal?a=1&b=\"2\"");
    let root = xml::parse(w.as_bytes(), 1 << 20).unwrap();
    assert!(root.is("http://schemas.xmlsoap.org/wsdl/", "definitions"));
    for op in OPERATIONS {
        assert!(w.contains(&format!("<xsd:element name=\"{op}\">")), "{op}");
        assert!(
            w.contains(&format!("<xsd:element name=\"{op}Response\">")),
            "{op}"
        );
    }
    assert!(w.contains("?a=1&amp;b=&quot;2&quot;"));
}

fn valid_request() -> String {
    write_request(&token(), &submit())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_request(&bytes).map(|e| e.request());
        let _ = parse_response::<ListOrdersResponse>(&bytes);
    }

    #[test]
    fn mutated_envelopes_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..12)
    ) {
        let mut bytes = valid_request().into_bytes();
        for (at, b, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = b,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, b),
            }
        }
        let _ = parse_request(&bytes).map(|e| e.request());
    }

    #[test]
    fn spliced_xml_fragments_never_panic(
        parts in proptest::collection::vec(prop::sample::select(vec![
            "<t:SubmitOrder>", "</t:SubmitOrder>", "<t:line>", "</t:line>", "<t:sku>", "</t:sku>",
            "COLA", "&amp;", "&#x0;", "&#xFFFFFF;", "&bogus;", "<![CDATA[x]]>", "<!-- c -->",
            "<?pi x?>", "<!DOCTYPE x>", "<t:quantity>", "</t:quantity>", "1.5", "\u{FEFF}",
            "<a xmlns:p='urn:p' p:x='1' p:x='2'>", "</a>", "<p:y/>", "]]>", "<", ">", "\"",
        ]), 0..64)
    ) {
        let body: String = parts.concat();
        let xml = envelope("", &body);
        let _ = parse_request(xml.as_bytes()).map(|e| e.request());
        let _ = parse_response::<SubmitOrderResponse>(xml.as_bytes());
    }
}

#[test]
fn a_deep_envelope_is_refused_quickly() {
    let body = format!("{}{}", "<a>".repeat(200_000), "</a>".repeat(200_000));
    let xml = envelope("", &body);
    // Over the request limit: refused before parsing.
    assert_eq!(code_of(&xml), "payload_too_large");
    let body = "<a>".repeat(10_000);
    assert_eq!(code_of(&envelope("", &body)), "too_deep");
}

#[test]
fn a_cash_tender_answer_round_trips_and_bad_tenders_are_faults() {
    let t = TenderCashResponse {
        order_id: "0190-abc".into(),
        amount: Money::from_fen(1058),
        tendered: Money::from_fen(2000),
        change: Money::from_fen(942),
        by: "terminal:S001-T01".into(),
        at: "2026-12-02T08:00:00.000000Z".into(),
    };
    let xml = write_response(&t);
    assert!(xml.contains("<tns:change>9.42</tns:change>"), "{xml}");
    assert_eq!(
        parse_response::<TenderCashResponse>(xml.as_bytes()).unwrap(),
        t
    );
    for bad in ["1e3", "-1", "0.001", "", "99999999999999999999"] {
        let xml = write_request(
            &token(),
            &TenderCash {
                order_id: "x".into(),
                tendered: Money::from_fen(1),
            },
        )
        .replace(
            "<tns:tendered>0.01</tns:tendered>",
            &format!("<tns:tendered>{bad}</tns:tendered>"),
        );
        let env = parse_request(xml.as_bytes()).unwrap();
        assert!(env.request().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn money_in_messages_is_decimal_text() {
    let xml = write_response(&GetOrderResponse { order: order() });
    assert!(xml.contains("<tns:unitPrice>39.90</tns:unitPrice>"));
    assert!(xml.contains("<tns:quantity>0.355</tns:quantity>"));
    assert_eq!(Money::parse("14.16").unwrap().to_string(), "14.16");
}

#[test]
fn the_wsdl_names_exactly_the_refund_states_and_each_reads_back() {
    let w = wsdl::wsdl("http://127.0.0.1:8080/soap/terminal");
    let start = w
        .find("<xsd:simpleType name=\"RefundState\">")
        .expect("RefundState in the WSDL");
    let end = start + w[start..].find("</xsd:simpleType>").expect("its end");
    let listed: Vec<&str> = w[start..end]
        .split("<xsd:enumeration value=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    let ours: Vec<&str> = RefundState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(listed, ours);
    assert_eq!(ours, ["requested", "processing", "succeeded", "failed"]);
    assert!(RefundState::parse("pending").is_err(), "pending is gone");
    for &state in RefundState::ALL {
        assert_eq!(
            state.is_final(),
            matches!(state, RefundState::Succeeded | RefundState::Failed)
        );
        let refund = PaymentRefund {
            id: "0123456789abcdef01234567-1R1".into(),
            charge_id: "0123456789abcdef01234567-1".into(),
            order_id: "0190a".into(),
            request_id: "r-1".into(),
            state,
            failure_code: None,
            failure_reason: None,
            amount: Money::parse("5.00").unwrap(),
            created_at: "2026-11-27T19:48:00+08:00".into(),
            updated_at: "2026-11-27T19:48:00+08:00".into(),
            reason: None,
            restock: false,
            lines: Vec::new(),
        };
        let r = RefundOrderResponse { refund };
        let xml = write_response(&r);
        assert!(
            xml.contains(&format!("<tns:state>{}</tns:state>", state.as_str())),
            "{xml}"
        );
        assert_eq!(
            parse_response::<RefundOrderResponse>(xml.as_bytes()).unwrap(),
            r
        );
    }
}
