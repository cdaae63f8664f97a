//! The terminal's SOAP interface, black-box through the real HTTP stack:
//! every operation, every Fault code, authentication and store isolation,
//! idempotent retries, hostile envelopes, the terminal-sdk client, and an
//! independent SOAP stack (Python zeep) driven from its WSDL.

#[path = "soap/app.rs"]
mod app;

use std::time::Duration;

use app::App;
use proto::order::{Channel, OrderAction, OrderStatus, Sku, TerminalId};
use proto::soap::{
    self, Fault, FaultKind, GetCatalog, GetCatalogResponse, GetOrder, GetOrderResponse, Heartbeat,
    HeartbeatResponse, ListOrders, ListOrdersResponse, PeripheralHealth, PeripheralKind,
    PeripheralStatus, ResponseError, SubmitLine, SubmitOrder, SubmitOrderResponse,
    UpdateOrderStatus, UpdateOrderStatusResponse,
};
use serde_json::json;
use terminal_sdk::client::{ClientConfig, ClientError, GatewayClient};

fn sale(id: &str, lines: &[(&str, &str)]) -> SubmitOrder {
    SubmitOrder {
        client_order_id: id.into(),
        lines: lines
            .iter()
            .map(|(sku, q)| SubmitLine {
                sku: Sku::parse(sku).unwrap(),
                quantity: (*q).into(),
                unit_price: None,
            })
            .collect(),
        note: None,
        sold_at: None,
        catalog_version: None,
    }
}

fn update(id: &str, action: OrderAction, reason: Option<&str>) -> UpdateOrderStatus {
    UpdateOrderStatus {
        order_id: id.into(),
        action,
        reason: reason.map(str::to_owned),
    }
}

fn fault<T: std::fmt::Debug>(r: Result<T, ResponseError>) -> Fault {
    match r {
        Err(ResponseError::Fault(f)) => f,
        other => panic!("expected a Fault, got {other:?}"),
    }
}

#[tokio::test]
async fn wsdl_is_served_with_this_address() {
    let app = App::spawn().await;
    for q in ["?wsdl", "?WSDL"] {
        let r = app
            .http
            .get(format!("{}{q}", app.endpoint()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/xml")
        );
        let body = r.text().await.unwrap();
        let root = soap::xml::parse(body.as_bytes(), 1 << 20).unwrap();
        assert!(root.is("http://schemas.xmlsoap.org/wsdl/", "definitions"));
        assert!(
            body.contains(&format!("location=\"{}\"", app.endpoint())),
            "{body}"
        );
    }
    let r = app.http.get(app.endpoint()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn every_operation_works_and_matches_rest() {
    let app = App::spawn().await;
    every_operation(&app).await;
    app.stop().await;
}

/// The same on PostgreSQL (the heartbeat upsert and migration 0002 there).
#[tokio::test]
async fn every_operation_works_on_postgres() {
    let pg = match tests::ThrowawayPg::create().await {
        Ok(pg) => pg,
        Err(why) => {
            tests::postgres_unavailable(&why);
            return;
        }
    };
    let app = App::spawn_on(Some(pg)).await;
    every_operation(&app).await;
    app.stop().await;
}

async fn every_operation(app: &App) {
    // SubmitOrder: pieces and a weight, priced by the catalog.
    let mut s = sale("T01-0001", &[("COLA", "2"), ("DUCK", "0.355")]);
    s.note = Some("少辣 & <quick>".into());
    let first: SubmitOrderResponse = app.t1(&s).await.unwrap();
    assert!(!first.replayed);
    let o = &first.order;
    assert_eq!(o.channel, Channel::Terminal);
    assert_eq!(o.store_id.as_str(), "S001");
    assert_eq!(o.status, OrderStatus::Created);
    assert_eq!(o.total.to_string(), "21.16"); // 7.00 + 14.16 (0.355 kg × 39.90)
    assert_eq!(o.lines[1].quantity.to_string(), "0.355");
    assert_eq!(o.lines[1].name, "鸭脖 & wings");
    assert_eq!(o.note.as_deref(), Some("少辣 & <quick>"));
    assert_eq!(o.display_no, 1);

    // A retry with the same clientOrderId is the same order, not a second.
    let again: SubmitOrderResponse = app.t1(&s).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.order.id, o.id);
    // Another terminal's ids are its own.
    let other: SubmitOrderResponse = app
        .call(
            "S001-T02",
            &app.t2.clone(),
            &sale("T01-0001", &[("COLA", "1")]),
        )
        .await
        .unwrap();
    assert!(!other.replayed);
    assert_ne!(other.order.id, o.id);

    // REST sees the same order.
    let (st, rest) = app
        .get_json(&format!("/api/v1/orders/{}", o.id), &app.admin)
        .await;
    assert_eq!(st, 200);
    assert_eq!(rest["total"], "21.16");
    assert_eq!(rest["display_no"], 1);
    assert_eq!(rest["channel"], "terminal");
    assert_eq!(rest["lines"][1]["quantity"], "0.355");

    // GetOrder.
    let got: GetOrderResponse = app
        .t1(&GetOrder {
            order_id: o.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(&got.order, o);

    // An official order from the app lands in the same queue.
    let (st, official) = app
        .post_json(
            "/api/v1/orders",
            &app.app_key,
            &json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": 1}]}),
        )
        .await;
    assert_eq!(st, 201, "{official}");
    let official_id = official["id"].as_str().unwrap().to_owned();

    // ListOrders: all channels, then only what changed after the cursor.
    let all: ListOrdersResponse = app.t1(&ListOrders::default()).await.unwrap();
    let ids: Vec<_> = all.orders.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        [o.id.as_str(), other.order.id.as_str(), official_id.as_str()]
    );
    assert!(!all.has_more);
    let (_, rest_queue) = app.get_json("/api/v1/stores/S001/orders", &app.admin).await;
    assert_eq!(rest_queue["cursor"], all.cursor);
    let quiet: ListOrdersResponse = app
        .t1(&ListOrders {
            since: Some(all.cursor),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(quiet.orders.is_empty());
    assert_eq!(quiet.cursor, all.cursor);

    // UpdateOrderStatus on an order of another channel.
    let accepted: UpdateOrderStatusResponse = app
        .t1(&update(&official_id, OrderAction::Accept, None))
        .await
        .unwrap();
    assert_eq!(accepted.order.status, OrderStatus::Accepted);
    assert_eq!(
        accepted.order.history.last().unwrap().by,
        "terminal:S001-T01"
    );
    let changed: ListOrdersResponse = app
        .t1(&ListOrders {
            since: Some(all.cursor),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(changed.orders.len(), 1);
    assert_eq!(changed.orders[0].id, official_id);
    assert_eq!(changed.orders[0].status, OrderStatus::Accepted);
    // Filters: by status, by channel, with a limit.
    let created: ListOrdersResponse = app
        .t1(&ListOrders {
            statuses: vec![OrderStatus::Created],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.orders.len(), 2);
    let official_only: ListOrdersResponse = app
        .t1(&ListOrders {
            channel: Some(Channel::Official),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(official_only.orders.len(), 1);
    let page: ListOrdersResponse = app
        .t1(&ListOrders {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.orders.len(), 1);
    assert!(page.has_more);

    // The whole life of an order, with reasons recorded.
    for action in [
        OrderAction::Accept,
        OrderAction::Ready,
        OrderAction::Complete,
    ] {
        let r: UpdateOrderStatusResponse = app.t1(&update(&o.id, action, None)).await.unwrap();
        assert_eq!(r.order.id, o.id);
    }
    let rejected: UpdateOrderStatusResponse = app
        .t1(&update(
            &other.order.id,
            OrderAction::Reject,
            Some("sold out"),
        ))
        .await
        .unwrap();
    assert_eq!(rejected.order.status, OrderStatus::Rejected);
    assert_eq!(
        rejected.order.history.last().unwrap().reason.as_deref(),
        Some("sold out")
    );
    let (_, rest) = app
        .get_json(&format!("/api/v1/orders/{}", o.id), &app.t1)
        .await;
    assert_eq!(rest["status"], "completed");

    // GetCatalog with versions.
    let cat: GetCatalogResponse = app.t1(&GetCatalog::default()).await.unwrap();
    assert!(!cat.unchanged);
    assert_eq!(cat.store_id.as_str(), "S001");
    let (_, rest_cat) = app
        .get_json("/api/v1/stores/S001/catalog", &app.admin)
        .await;
    assert_eq!(rest_cat["version"], cat.version.as_str());
    assert_eq!(cat.items.len(), rest_cat["items"].as_array().unwrap().len());
    let duck = cat.items.iter().find(|i| i.sku.as_str() == "DUCK").unwrap();
    assert_eq!(duck.price.to_string(), "39.90");
    assert_eq!(duck.on_hand.to_string(), "9.645"); // 10 kg less the completed 0.355
    let same: GetCatalogResponse = app
        .t1(&GetCatalog {
            known_version: Some(cat.version.clone()),
        })
        .await
        .unwrap();
    assert!(same.unchanged);
    assert!(same.items.is_empty());
    app::stock(&app.db, "S001", "COLA", "50").await;
    let moved: GetCatalogResponse = app
        .t1(&GetCatalog {
            known_version: Some(cat.version.clone()),
        })
        .await
        .unwrap();
    assert!(!moved.unchanged);
    assert_ne!(moved.version, cat.version);

    // Heartbeat, shown over REST.
    let hb = Heartbeat {
        software_version: "2.4.1".into(),
        peripherals: vec![
            PeripheralHealth {
                kind: PeripheralKind::Printer,
                status: PeripheralStatus::PaperEnd,
                detail: Some("roll out".into()),
            },
            PeripheralHealth {
                kind: PeripheralKind::Scale,
                status: PeripheralStatus::Ok,
                detail: None,
            },
        ],
    };
    let ack: HeartbeatResponse = app.t1(&hb).await.unwrap();
    assert!(ack.received_at.contains('T'));
    let (st, terms) = app
        .get_json("/api/v1/stores/S001/terminals", &app.admin)
        .await;
    assert_eq!(st, 200, "{terms}");
    let t = &terms["terminals"];
    assert_eq!(t[0]["terminal_id"], "S001-T01");
    assert_eq!(t[0]["software_version"], "2.4.1");
    assert_eq!(t[0]["online"], true);
    assert_eq!(t[0]["last_heartbeat_at"], ack.received_at.as_str());
    assert_eq!(t[0]["peripherals"][0]["status"], "paper_end");
    assert_eq!(t[0]["peripherals"][0]["detail"], "roll out");
    assert_eq!(t[1]["terminal_id"], "S001-T02");
    assert_eq!(t[1]["online"], false);
    assert_eq!(t[1]["last_heartbeat_at"], serde_json::Value::Null);
    // The store's own terminal may look; another store's and the app may not.
    assert_eq!(
        app.get_json("/api/v1/stores/S001/terminals", &app.t2)
            .await
            .0,
        200
    );
    assert_eq!(
        app.get_json("/api/v1/stores/S001/terminals", &app.s2)
            .await
            .0,
        403
    );
    assert_eq!(
        app.get_json("/api/v1/stores/S001/terminals", &app.app_key)
            .await
            .0,
        403
    );
    assert_eq!(
        app.get_json("/api/v1/stores/S009/terminals", &app.admin)
            .await
            .0,
        404
    );
}

/// Every domain Fault through SOAP, with the REST code and Client/Server.
#[tokio::test]
async fn domain_errors_are_faults_with_the_rest_code() {
    let app = App::spawn().await;
    let order: SubmitOrderResponse = app.t1(&sale("a", &[("COLA", "1")])).await.unwrap();
    let id = order.order.id.clone();

    let cases: Vec<(Fault, &str)> = vec![
        (
            fault(
                app.t1::<_, SubmitOrderResponse>(&sale("b", &[("NOPE", "1")]))
                    .await,
            ),
            "unknown_sku",
        ),
        (
            fault(
                app.t1::<_, SubmitOrderResponse>(&sale("c", &[("RARE", "2")]))
                    .await,
            ),
            "out_of_stock",
        ),
        (
            fault(
                app.t1::<_, SubmitOrderResponse>(&sale("d", &[("COLA", "1.5")]))
                    .await,
            ),
            "invalid_quantity",
        ),
        (
            fault(
                app.t1::<_, SubmitOrderResponse>(&sale("e", &[("DUCK", "0.0001")]))
                    .await,
            ),
            "invalid_quantity",
        ),
        (
            fault(app.t1::<_, SubmitOrderResponse>(&sale("f", &[])).await),
            "invalid_lines",
        ),
        (
            fault(
                app.t1::<_, UpdateOrderStatusResponse>(&update(&id, OrderAction::Complete, None))
                    .await,
            ),
            "illegal_transition",
        ),
        (
            fault(
                app.t1::<_, UpdateOrderStatusResponse>(&update(&id, OrderAction::Reject, None))
                    .await,
            ),
            "reason_required",
        ),
        (
            fault(
                app.t1::<_, GetOrderResponse>(&GetOrder {
                    order_id: "missing".into(),
                })
                .await,
            ),
            "order_not_found",
        ),
        (
            fault(
                app.t1::<_, UpdateOrderStatusResponse>(&update(
                    "missing",
                    OrderAction::Accept,
                    None,
                ))
                .await,
            ),
            "order_not_found",
        ),
        // Another store's terminal sees nothing of S001.
        (
            fault(
                app.call::<_, GetOrderResponse>(
                    "S002-T01",
                    &app.s2.clone(),
                    &GetOrder {
                        order_id: id.clone(),
                    },
                )
                .await,
            ),
            "order_not_found",
        ),
        (
            fault(
                app.call::<_, UpdateOrderStatusResponse>(
                    "S002-T01",
                    &app.s2.clone(),
                    &update(&id, OrderAction::Cancel, Some("x")),
                )
                .await,
            ),
            "order_not_found",
        ),
    ];
    for (f, code) in cases {
        assert_eq!(f.code, code, "{f}");
        assert_eq!(f.kind, FaultKind::Client, "{f}");
        assert!(!f.message.is_empty());
    }
    // The S002 terminal's queue does not hold S001's order.
    let q: ListOrdersResponse = app
        .call("S002-T01", &app.s2.clone(), &ListOrders::default())
        .await
        .unwrap();
    assert!(q.orders.is_empty());
    // The refused cancel changed nothing.
    let still: GetOrderResponse = app.t1(&GetOrder { order_id: id }).await.unwrap();
    assert_eq!(still.order.status, OrderStatus::Created);

    // A Server fault: the database is gone.
    app.db.pool.close().await;
    let f = fault(
        app.t1::<_, GetOrderResponse>(&GetOrder {
            order_id: "x".into(),
        })
        .await,
    );
    assert_eq!(f.kind, FaultKind::Server);
    assert_eq!(f.code, "unavailable");
    app.stop().await;
}

fn envelope(header: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:smart-terminal:gateway:v1"><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

fn security(user: &str, password: &str) -> String {
    format!(
        r#"<w:Security xmlns:w="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><w:UsernameToken><w:Username>{user}</w:Username><w:Password>{password}</w:Password></w:UsernameToken></w:Security>"#
    )
}

/// Authentication, envelope and XML refusals: each a Client Fault (or the
/// SOAP 1.1 code for its case) with a stable code, HTTP 500, never a crash.
#[tokio::test]
async fn bad_requests_and_bad_credentials_are_faults() {
    let app = App::spawn().await;
    let get = "<t:GetOrder><t:orderId>x</t:orderId></t:GetOrder>";
    let good = security("S001-T01", &app.t1);
    let big = format!(
        "<t:SubmitOrder><t:clientOrderId>x</t:clientOrderId><t:note>{}</t:note></t:SubmitOrder>",
        "a".repeat(70_000)
    );
    let deep = format!("{}{}", "<a>".repeat(5_000), "</a>".repeat(5_000));
    let cases: Vec<(&str, String, &str, FaultKind)> = vec![
        (
            "no header",
            envelope("", get),
            "unauthorized",
            FaultKind::Client,
        ),
        (
            "wrong key",
            envelope(&security("S001-T01", "gk_nope"), get),
            "unauthorized",
            FaultKind::Client,
        ),
        (
            "empty key",
            envelope(&security("S001-T01", ""), get),
            "unauthorized",
            FaultKind::Client,
        ),
        (
            "someone else's id",
            envelope(&security("S001-T02", &app.t1), get),
            "unauthorized",
            FaultKind::Client,
        ),
        (
            "admin key",
            envelope(&security("S001-T01", &app.admin), get),
            "unauthorized",
            FaultKind::Client,
        ),
        (
            "app key",
            envelope(&security("S001-T01", &app.app_key), get),
            "unauthorized",
            FaultKind::Client,
        ),
        (
            "unknown operation",
            envelope(&good, "<t:DropTables/>"),
            "unknown_operation",
            FaultKind::Client,
        ),
        (
            "wrong namespace",
            envelope(
                &good,
                "<GetOrder xmlns=\"urn:other\"><orderId>x</orderId></GetOrder>",
            ),
            "unknown_operation",
            FaultKind::Client,
        ),
        (
            "empty body",
            envelope(&good, ""),
            "unknown_operation",
            FaultKind::Client,
        ),
        (
            "misspelt field",
            envelope(&good, "<t:GetOrder><t:orderID>x</t:orderID></t:GetOrder>"),
            "invalid_request",
            FaultKind::Client,
        ),
        (
            "bad status",
            envelope(
                &good,
                "<t:ListOrders><t:status>gone</t:status></t:ListOrders>",
            ),
            "invalid_status",
            FaultKind::Client,
        ),
        (
            "bad cursor",
            envelope(
                &good,
                "<t:ListOrders><t:since>soon</t:since></t:ListOrders>",
            ),
            "invalid_cursor",
            FaultKind::Client,
        ),
        (
            "bad limit",
            envelope(&good, "<t:ListOrders><t:limit>0</t:limit></t:ListOrders>"),
            "invalid_limit",
            FaultKind::Client,
        ),
        (
            "bad action",
            envelope(
                &good,
                "<t:UpdateOrderStatus><t:orderId>x</t:orderId><t:action>eat</t:action></t:UpdateOrderStatus>",
            ),
            "invalid_action",
            FaultKind::Client,
        ),
        (
            "bad sku",
            envelope(
                &good,
                "<t:SubmitOrder><t:clientOrderId>x</t:clientOrderId><t:line><t:sku>a b</t:sku><t:quantity>1</t:quantity></t:line></t:SubmitOrder>",
            ),
            "invalid_sku",
            FaultKind::Client,
        ),
        (
            "bad peripheral",
            envelope(
                &good,
                "<t:Heartbeat><t:softwareVersion>1</t:softwareVersion><t:peripheral><t:kind>toaster</t:kind><t:status>ok</t:status></t:peripheral></t:Heartbeat>",
            ),
            "invalid_peripheral",
            FaultKind::Client,
        ),
        (
            "must understand",
            envelope(
                &format!("{good}<x:Trace xmlns:x=\"urn:x\" s:mustUnderstand=\"1\"/>"),
                get,
            ),
            "must_understand",
            FaultKind::MustUnderstand,
        ),
        (
            "doctype",
            format!("<!DOCTYPE s [<!ENTITY e \"x\">]>{}", envelope(&good, get)),
            "dtd_refused",
            FaultKind::Client,
        ),
        (
            "undeclared entity",
            envelope(&good, "<t:GetOrder><t:orderId>&e;</t:orderId></t:GetOrder>"),
            "invalid_xml",
            FaultKind::Client,
        ),
        (
            "not XML",
            "{\"json\": true}".to_owned(),
            "invalid_xml",
            FaultKind::Client,
        ),
        (
            "truncated",
            envelope(&good, get)[..200].to_owned(),
            "invalid_xml",
            FaultKind::Client,
        ),
        (
            "not SOAP",
            "<order/>".to_owned(),
            "not_soap",
            FaultKind::Client,
        ),
        (
            "deep nesting",
            envelope(&good, &deep),
            "too_deep",
            FaultKind::Client,
        ),
        (
            "too large",
            envelope(&good, &big),
            "payload_too_large",
            FaultKind::Client,
        ),
        (
            "SOAP 1.2",
            format!(
                r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:t="urn:smart-terminal:gateway:v1"><e:Header>{good}</e:Header><e:Body>{get}</e:Body></e:Envelope>"#
            ),
            "soap_version_mismatch",
            FaultKind::VersionMismatch,
        ),
    ];
    for (what, body, code, kind) in cases {
        let (status, text) = app.post_xml(body).await;
        assert_eq!(status, 500, "{what}: {text}");
        let f = fault(soap::parse_response::<GetOrderResponse>(text.as_bytes()));
        assert_eq!((f.code.as_str(), f.kind), (code, kind), "{what}: {text}");
    }
    // SOAP 1.2's own media type gets the same clear answer.
    let (status, text) = app
        .post_raw(
            "application/soap+xml",
            r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>"#,
        )
        .await;
    assert_eq!(status, 500);
    assert_eq!(
        fault(soap::parse_response::<GetOrderResponse>(text.as_bytes())).code,
        "soap_version_mismatch"
    );
    let (status, text) = app.post_raw("application/json", "{}").await;
    assert_eq!(status, 500);
    assert_eq!(
        fault(soap::parse_response::<GetOrderResponse>(text.as_bytes())).code,
        "unsupported_media_type"
    );
    // A revoked key stops working (the key cache holds answers for 10 s, so
    // check the refusal through a key never seen before revocation).
    let k = gateway::keys::create(
        &app.db,
        gateway::keys::KeySpec {
            role: gateway::keys::Role::Terminal,
            store: Some("S001".parse().unwrap()),
            terminal: Some("S001-T09".parse().unwrap()),
            label: None,
        },
    )
    .await
    .unwrap();
    assert!(gateway::keys::revoke(&app.db, &k.id).await.unwrap());
    let f = fault(
        app.call::<_, GetOrderResponse>(
            "S001-T09",
            &k.token,
            &GetOrder {
                order_id: "x".into(),
            },
        )
        .await,
    );
    assert_eq!(f.code, "unauthorized");
    // After all that the service still answers.
    let ok: Result<ListOrdersResponse, _> = app.t1(&ListOrders::default()).await;
    assert!(ok.is_ok());
    app.stop().await;
}

#[tokio::test]
async fn a_hand_written_envelope_with_other_prefixes_works() {
    // What an ordinary toolkit sends: default namespaces, whitespace, a
    // Security header with Nonce/Created and PasswordText typed.
    let app = App::spawn().await;
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
  <soapenv:Header>
    <wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" soapenv:mustUnderstand="1">
      <wsse:UsernameToken>
        <wsse:Username>S001-T01</wsse:Username>
        <wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">{}</wsse:Password>
        <wsse:Nonce>abc</wsse:Nonce>
      </wsse:UsernameToken>
    </wsse:Security>
  </soapenv:Header>
  <soapenv:Body>
    <SubmitOrder xmlns="urn:smart-terminal:gateway:v1">
      <clientOrderId>hand-1</clientOrderId>
      <line><sku>COLA</sku><quantity>3</quantity></line>
    </SubmitOrder>
  </soapenv:Body>
</soapenv:Envelope>"#,
        app.t1
    );
    let (status, text) = app.post_xml(body).await;
    assert_eq!(status, 200, "{text}");
    let r = soap::parse_response::<SubmitOrderResponse>(text.as_bytes()).unwrap();
    assert_eq!(r.order.total.to_string(), "10.50");
    assert_eq!(r.order.channel_order_id.as_deref(), Some("S001-T01:hand-1"));
    app.stop().await;
}

fn client(base: &str, terminal: &str, key: &str) -> GatewayClient {
    let mut cfg = ClientConfig::new(base, TerminalId::parse(terminal).unwrap(), key);
    cfg.backoff = Duration::from_millis(10);
    GatewayClient::new(cfg).unwrap()
}

/// The terminal-sdk client through the same scenarios.
#[tokio::test]
async fn terminal_sdk_client_against_the_gateway() {
    let app = App::spawn().await;
    let c = client(&app.base, "S001-T01", &app.t1);

    let first = c
        .submit_order(&sale("sdk-1", &[("DUCK", "1.250")]))
        .await
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.order.total.to_string(), "49.88"); // 1.25 × 39.90 = 49.875 → 49.88
    let again = c
        .submit_order(&sale("sdk-1", &[("DUCK", "1.250")]))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.order.id, first.order.id);
    let id = first.order.id.clone();
    assert_eq!(c.get_order(&id).await.unwrap(), first.order);
    let page = c.list_orders(&ListOrders::default()).await.unwrap();
    assert_eq!(page.orders.len(), 1);
    let o = c
        .update_order_status(&id, OrderAction::Accept, None)
        .await
        .unwrap();
    assert_eq!(o.status, OrderStatus::Accepted);
    let next = c
        .list_orders(&ListOrders {
            since: Some(page.cursor),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.orders[0].status, OrderStatus::Accepted);
    let cat = c.get_catalog(None).await.unwrap();
    assert_eq!(cat.items.len(), 3);
    assert!(c.get_catalog(Some(&cat.version)).await.unwrap().unchanged);
    c.heartbeat(&Heartbeat {
        software_version: "sdk".into(),
        peripherals: vec![],
    })
    .await
    .unwrap();

    // Faults become typed errors with the code.
    let e = c
        .submit_order(&sale("sdk-2", &[("RARE", "5")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "out_of_stock");
    assert!(matches!(&e, ClientError::Fault(f) if f.kind == FaultKind::Client));
    assert!(!e.is_retryable());
    let e = c
        .update_order_status(&id, OrderAction::Complete, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "illegal_transition");
    let e = c.get_order("missing").await.unwrap_err();
    assert_eq!(e.code(), "order_not_found");
    let wrong = client(&app.base, "S001-T01", "gk_wrong");
    assert_eq!(
        wrong
            .list_orders(&ListOrders::default())
            .await
            .unwrap_err()
            .code(),
        "unauthorized"
    );
    let other_store = client(&app.base, "S002-T01", &app.s2);
    assert_eq!(
        other_store.get_order(&id).await.unwrap_err().code(),
        "order_not_found"
    );

    // Nobody listening: a transport error after the retries.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gone = client(&format!("http://{closed}"), "S001-T01", &app.t1);
    let e = gone.get_catalog(None).await.unwrap_err();
    assert_eq!(e.code(), "transport");
    assert!(e.is_retryable());
    app.stop().await;
}

/// The answer to a submit is lost after the gateway created the order: the
/// client's retry carries the same clientOrderId and gets that order back.
/// A lost answer to a status change is recognised by reading the order.
#[tokio::test]
async fn retries_after_a_lost_answer_never_duplicate() {
    let app = App::spawn().await;
    let lossy = app::losing_first_answer(app.addr).await;
    let c = client(&format!("http://{lossy}"), "S001-T01", &app.t1);
    let r = c
        .submit_order(&sale("lost-1", &[("COLA", "1")]))
        .await
        .unwrap();
    assert!(r.replayed, "the first attempt created it");
    let all: ListOrdersResponse = app.t1(&ListOrders::default()).await.unwrap();
    assert_eq!(all.orders.len(), 1);
    assert_eq!(all.orders[0].id, r.order.id);

    let lossy = app::losing_first_answer(app.addr).await;
    let c = client(&format!("http://{lossy}"), "S001-T01", &app.t1);
    let o = c
        .update_order_status(&r.order.id, OrderAction::Accept, None)
        .await
        .unwrap();
    assert_eq!(o.status, OrderStatus::Accepted);
    assert_eq!(o.history.len(), 2, "accepted once");
    app.stop().await;
}

/// Python's zeep, an independent SOAP stack, drives every operation from
/// the WSDL alone; the script also validates the WSDL and the server's
/// messages against its XSD (lxml) and compares with REST.
#[tokio::test]
async fn zeep_interoperates_from_the_wsdl() {
    let app = App::spawn().await;
    let env = [
        ("GATEWAY_URL", app.base.as_str()),
        ("TERMINAL_ID", "S001-T01"),
        ("TERMINAL_KEY", app.t1.as_str()),
        ("OTHER_TERMINAL_ID", "S002-T01"),
        ("OTHER_TERMINAL_KEY", app.s2.as_str()),
        ("ADMIN_KEY", app.admin.as_str()),
        ("APP_KEY", app.app_key.as_str()),
    ];
    if let Some(stdout) = tests::run_zeep("zeep_terminal.py", &env).await {
        assert!(
            stdout.contains("zeep interop: all checks passed"),
            "{stdout}"
        );
    }
    app.stop().await;
}
