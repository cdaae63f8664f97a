//! The platform simulator against a stub gateway that checks pushes with
//! `proto::meituan`, and against a client making the gateway's calls.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use hw_sim::platform::{
    Faults, ItemSpec, OrderSpec, PlatformConfig, PlatformSim, PushKind, PushRequest, Yuan, status,
};
use proto::meituan::{self as mt, Call, Push};
use serde_json::{Value, json};

const APP_ID: &str = "app-7";
const SECRET: &str = "platform-secret";

/// What the stub gateway saw: the event, then the push or why it refused it.
type Seen = Arc<Mutex<Vec<(String, Result<Push, String>)>>>;

#[derive(Clone)]
struct Stub {
    base: String,
    seen: Seen,
}

/// A gateway stand-in: verifies sig and timestamp like the real one must.
async fn stub_gateway() -> Stub {
    async fn handle(
        State(stub): State<Stub>,
        Path(event): Path<String>,
        body: Bytes,
    ) -> (StatusCode, String) {
        let url = format!("{}/channels/meituan/{event}", stub.base);
        let result = (|| {
            let params = mt::parse_form(&body).map_err(|e| e.to_string())?;
            mt::verify(&url, &params, SECRET).map_err(|e| e.to_string())?;
            mt::check_timestamp(
                mt::param(&params, "timestamp").unwrap_or(""),
                now_s(),
                mt::DEFAULT_WINDOW_S,
            )
            .map_err(|e| e.to_string())?;
            if mt::param(&params, "app_id") != Some(APP_ID) {
                return Err("app_id".to_owned());
            }
            Push::parse(&event, &params).map_err(|e| e.to_string())
        })();
        let answer = match &result {
            Ok(_) => (StatusCode::OK, mt::ANSWER_OK.to_owned()),
            Err(e) => (StatusCode::FORBIDDEN, json!({ "error": e }).to_string()),
        };
        stub.seen.lock().unwrap().push((event, result));
        answer
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub = Stub {
        base: format!("http://{}", listener.local_addr().unwrap()),
        seen: Arc::default(),
    };
    let app = Router::new()
        .route("/channels/meituan/{event}", post(handle))
        .with_state(stub.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    stub
}

fn now_s() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

async fn sim(gateway: &str) -> PlatformSim {
    PlatformSim::start(PlatformConfig::new(gateway, APP_ID, SECRET))
        .await
        .unwrap()
}

fn order(store: &str) -> PushRequest {
    PushRequest::new_order(
        store,
        vec![
            ItemSpec::new("A1", "牛肉面", 2, 1250),
            ItemSpec::new("B2", "茶", 1, 60),
        ],
    )
}

/// Makes a gateway-side call: signed over `sign_base`, posted to `post_base`.
async fn call_as(
    sign_base: &str,
    post_base: &str,
    call: &Call,
    app_id: &str,
    secret: &str,
    ts: i64,
) -> (u16, String) {
    let params = call.signed_params(sign_base, app_id, secret, ts);
    let res = reqwest::Client::new()
        .post(mt::api_url(post_base, call.path()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(mt::encode_form(&params))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn call(sim: &PlatformSim, call: &Call) -> (u16, String) {
    call_as(&sim.url(), &sim.url(), call, APP_ID, SECRET, now_s()).await
}

fn confirm(id: &str) -> Call {
    Call::Confirm {
        order_id: id.into(),
    }
}

#[tokio::test]
async fn a_new_order_push_is_signed_filled_in_and_parses() {
    let gw = stub_gateway().await;
    let sim = sim(&gw.base).await;
    let mut req = order("s1");
    req.order.shipping_fee = Some(Yuan(500));
    req.order.discount = Some(Yuan(300));
    req.order.note = Some("少辣".into());
    let first = sim.push(req).await.unwrap();
    assert_eq!(first.status, 200, "{:?}", first.answer);
    assert_eq!(first.answer, json!({"data": "ok"}));
    assert_eq!(first.day_seq, Some(1));
    assert!(first.order_id.bytes().all(|b| b.is_ascii_digit()));

    let second = sim.push(order("s1")).await.unwrap();
    let other = sim.push(order("s2")).await.unwrap();
    assert_eq!(second.day_seq, Some(2));
    assert_eq!(other.day_seq, Some(1));
    assert_ne!(first.order_id, second.order_id);

    let seen = gw.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let (event, Ok(Push::NewOrder(o))) = &seen[0] else {
        panic!("{seen:?}");
    };
    assert_eq!(event, "new_order");
    assert_eq!(o.order_id, first.order_id);
    assert_eq!(o.app_poi_code, "s1");
    assert_eq!(o.caution, "少辣");
    assert_eq!(o.items.len(), 2);
    assert_eq!(o.items[0].price_fen, 1250);
    assert_eq!(o.items[0].quantity, 2);
    // Items 25.60; the customer pays items - discount + shipping.
    assert_eq!(o.original_price_fen, 2560 + 500);
    assert_eq!(o.shipping_fee_fen, 500);
    assert_eq!(o.total_fen, 2560 - 300 + 500);
    assert_eq!(o.poi_receive_amount_fen, 2560 - 300);
    assert_eq!(o.discounts[0].reduce_fee_fen, 300);

    let view = sim.order(&first.order_id).unwrap();
    assert_eq!(view.status, status::PUSHED);
    assert_eq!(view.store, "s1");
    assert_eq!(view.day_seq, 1);
    sim.stop();
}

#[tokio::test]
async fn forged_stale_and_repeated_pushes() {
    let gw = stub_gateway().await;
    let sim = sim(&gw.base).await;

    let mut forged = order("s1");
    forged.tamper = true;
    let out = sim.push(forged).await.unwrap();
    assert_eq!(out.status, 403);
    assert_eq!(out.answer, json!({"error": "signature does not match"}));

    let mut stale = order("s1");
    stale.stale_s = 3600;
    let out = sim.push(stale).await.unwrap();
    assert_eq!(out.status, 403);
    assert!(out.answer["error"].as_str().unwrap().contains("old"));

    let mut dup = order("s1");
    dup.repeat = 3;
    let out = sim.push(dup).await.unwrap();
    assert_eq!(out.statuses, vec![200, 200, 200]);

    let mut dup = order("s1");
    dup.repeat = 4;
    dup.concurrent = true;
    let out2 = sim.push(dup).await.unwrap();
    assert_eq!(out2.statuses, vec![200; 4]);

    let seen = gw.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2 + 3 + 4);
    let copies: Vec<&Push> = seen[2..5]
        .iter()
        .map(|(_, p)| p.as_ref().unwrap())
        .collect();
    assert!(copies.iter().all(|p| *p == copies[0]));
    assert_eq!(copies[0].order_id(), out.order_id);
    // Forged pushes are not the platform's: they leave no order behind.
    assert_eq!(sim.orders().len(), 2);

    // A raw override is signed, so only the field check refuses it.
    let mut bad = order("s1");
    bad.raw.insert("total".into(), Some("1.234".into()));
    bad.raw.insert("ctime".into(), None);
    let out = sim.push(bad).await.unwrap();
    assert_eq!(out.status, 403);
    assert_eq!(out.answer, json!({"error": "missing parameter `ctime`"}));
    sim.stop();
}

#[tokio::test]
async fn events_on_an_order_and_out_of_order() {
    let gw = stub_gateway().await;
    let sim = sim(&gw.base).await;
    let new = sim.push(order("s1")).await.unwrap();
    let id = new.order_id.as_str();

    let mut refund = PushRequest::event_on(PushKind::RefundApply, id);
    refund.order.money = Some(Yuan(350));
    let r = sim.push(refund).await.unwrap();
    assert_eq!(r.status, 200);
    let refund_id = r.refund_id.clone().unwrap();
    let rc = sim
        .push(PushRequest::event_on(PushKind::RefundCancel, id))
        .await
        .unwrap();
    assert_eq!(rc.refund_id.as_deref(), Some(refund_id.as_str()));
    let c = sim
        .push(PushRequest::event_on(PushKind::Cancel, id))
        .await
        .unwrap();
    assert_eq!(c.status, 200);

    // A cancel for an order not pushed yet, then the order itself.
    let early = sim
        .push(PushRequest::event_on(PushKind::Cancel, "990001"))
        .await
        .unwrap();
    assert_eq!(early.status, 200);
    let mut late = order("s1");
    late.order.order_id = Some("990001".into());
    let late = sim.push(late).await.unwrap();
    assert_eq!(late.order_id, "990001");

    let seen = gw.seen.lock().unwrap().clone();
    let events: Vec<&str> = seen.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        events,
        [
            "new_order",
            "refund_apply",
            "refund_cancel",
            "cancel",
            "cancel",
            "new_order"
        ]
    );
    let Ok(Push::RefundApply(ra)) = &seen[1].1 else {
        panic!("{seen:?}")
    };
    assert_eq!(ra.money_fen, Some(350));
    assert_eq!(ra.refund_id, refund_id);
    let view = sim.order(id).unwrap();
    assert_eq!(view.status, status::CANCELLED);
    assert_eq!(view.refunds[0].state, "cancelled");
    assert_eq!(sim.order("990001").unwrap().status, status::CANCELLED);

    assert!(
        sim.push(PushRequest::event_on(PushKind::Cancel, ""))
            .await
            .is_err()
    );
    assert!(
        sim.push(PushRequest::new_order("s1", vec![]))
            .await
            .is_err()
    );
    sim.stop();
}

#[tokio::test]
async fn the_control_api_pushes_from_json() {
    let gw = stub_gateway().await;
    let sim = sim(&gw.base).await;
    let http = reqwest::Client::new();
    let out: Value = http
        .post(format!("{}/push", sim.url()))
        .json(&json!({
            "event": "new",
            "order": {
                "store": "s9",
                "items": [{"sku": "A1", "name": "面", "quantity": 1, "price": "12.50"},
                          {"sku": "B2", "quantity": 2, "price": 0.5}],
                "note": "no onions",
                "shipping_fee": "3"
            }
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["day_seq"], 1);
    let id = out["order_id"].as_str().unwrap().to_owned();
    let first = gw.seen.lock().unwrap()[0].1.clone();
    let Ok(Push::NewOrder(o)) = first else {
        panic!("{first:?}")
    };
    assert_eq!(o.items[1].price_fen, 50);
    assert_eq!(o.total_fen, 1250 + 100 + 300);

    let res = http
        .post(format!("{}/push", sim.url()))
        .json(&json!({"event": "cancel", "order": {"order_id": id, "reason_code": 2001}, "repeat": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out: Value = res.json().await.unwrap();
    assert_eq!(out["statuses"], json!([200, 200]));

    for bad in [
        json!({"event": "nope"}),
        json!({"event": "new", "order": {"store": "s", "items": [{"sku": "a", "quantity": 1, "price": "1.234"}]}}),
        json!({"event": "new", "order": {"store": "s"}}),
        json!({"event": "cancel"}),
    ] {
        let res = http
            .post(format!("{}/push", sim.url()))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }
    let orders: Value = http
        .get(format!("{}/orders", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(orders["orders"][0]["status"], status::CANCELLED);
    sim.stop();
}

#[tokio::test]
async fn outbound_calls_are_checked_answered_and_logged() {
    let sim = sim("http://127.0.0.1:9").await;
    let base = sim.url();
    let ok = r#"{"data":"ok"}"#;
    assert_eq!(call(&sim, &confirm("1")).await, (200, ok.to_owned()));

    // Signed over the Host the client used.
    let port = sim.addr().port();
    let localhost = format!("http://localhost:{port}");
    assert_eq!(
        call_as(
            &localhost,
            &localhost,
            &confirm("2"),
            APP_ID,
            SECRET,
            now_s()
        )
        .await,
        (200, ok.to_owned())
    );

    let ng = |code: i64| {
        move |(s, body): (u16, String)| {
            assert_eq!(s, 200);
            assert_eq!(
                mt::parse_answer(body.as_bytes()).map_err(|e| match e {
                    mt::CallError::Rejected { code, .. } => code,
                    other => panic!("{other}"),
                }),
                Err(code)
            );
        }
    };
    ng(mt::ERR_SIG)(call_as(&base, &base, &confirm("3"), APP_ID, "wrong", now_s()).await);
    ng(mt::ERR_SIG)(
        call_as(
            "http://10.0.0.1:1",
            &base,
            &confirm("3"),
            APP_ID,
            SECRET,
            now_s(),
        )
        .await,
    );
    ng(mt::ERR_TIMESTAMP)(
        call_as(&base, &base, &confirm("3"), APP_ID, SECRET, now_s() - 3600).await,
    );
    ng(mt::ERR_APP_ID)(call_as(&base, &base, &confirm("3"), "other", SECRET, now_s()).await);
    // Bad parameters, validly signed.
    let bad = Call::Confirm {
        order_id: "x1".into(),
    };
    ng(mt::ERR_PARAM)(call(&sim, &bad).await);
    let unknown = reqwest::Client::new()
        .post(format!("{base}/api/v1/order/nope"))
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let got = sim.received();
    assert_eq!(got.len(), 8);
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    assert_eq!(
        got.iter().map(|r| r.sig_ok).collect::<Vec<_>>(),
        [true, true, false, false, true, true, true, false]
    );
    assert_eq!(got[0].path, "order/confirm");
    assert_eq!(got[0].order_id.as_deref(), Some("1"));
    assert!(!got[0].params.contains_key("sig"));
    assert_eq!(
        got[0].params.get("app_id").map(String::as_str),
        Some(APP_ID)
    );
    assert!(got[0].ok && got[1].ok && !got[2].ok);
    assert_eq!(got[2].answered, Some(200));
    assert!(got[2].error.as_deref().unwrap().starts_with("703"));

    // Over HTTP, with the ok filter, then cleared.
    let http = reqwest::Client::new();
    let oks: Vec<Value> = http
        .get(format!("{base}/received?ok=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oks.len(), 2);
    assert_eq!(oks[1]["order_id"], "2");
    let by_order: Vec<Value> = http
        .get(format!("{base}/received?order_id=3"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_order.len(), 4);
    let res = http
        .delete(format!("{base}/received"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(sim.received().is_empty());
    sim.stop();
}

#[tokio::test]
async fn calls_move_the_platforms_view() {
    let gw = stub_gateway().await;
    let sim = sim(&gw.base).await;
    let id = sim.push(order("s1")).await.unwrap().order_id;
    assert_eq!(call(&sim, &confirm(&id)).await.0, 200);
    assert_eq!(sim.order(&id).unwrap().status, status::CONFIRMED);
    call(
        &sim,
        &Call::PreparationMealComplete {
            order_id: id.clone(),
        },
    )
    .await;
    call(
        &sim,
        &Call::Delivering {
            order_id: id.clone(),
        },
    )
    .await;
    let v = sim.order(&id).unwrap();
    assert!(v.meal_ready);
    assert_eq!(v.status, status::DELIVERING);
    call(
        &sim,
        &Call::Arrived {
            order_id: id.clone(),
        },
    )
    .await;
    assert_eq!(sim.order(&id).unwrap().status, status::DELIVERED);

    // A cancelled order cannot be confirmed.
    let gone = sim.push(order("s1")).await.unwrap().order_id;
    sim.push(PushRequest::event_on(PushKind::Cancel, &gone))
        .await
        .unwrap();
    let (_, body) = call(&sim, &confirm(&gone)).await;
    assert!(matches!(
        mt::parse_answer(body.as_bytes()),
        Err(mt::CallError::Rejected {
            code: mt::ERR_STATE,
            ..
        })
    ));

    call(
        &sim,
        &Call::SkuStock {
            app_poi_code: "s1".into(),
            foods: vec![mt::FoodStock {
                app_food_code: "A1".into(),
                skus: vec![mt::SkuStock {
                    sku_id: "A1".into(),
                    stock: 0,
                }],
            }],
        },
    )
    .await;
    call(
        &sim,
        &Call::SellStatus {
            app_poi_code: "s1".into(),
            sell_status: mt::SellStatus::SoldOut,
            app_food_codes: vec!["A1".into()],
        },
    )
    .await;
    let foods = sim.foods();
    assert_eq!(foods.len(), 1);
    assert_eq!(foods[0].store, "s1");
    assert_eq!(foods[0].sell_status, Some(1));
    assert_eq!(foods[0].stock.get("A1"), Some(&0));
    sim.stop();
}

#[tokio::test]
async fn faults_refuse_calls_for_a_while_then_clear() {
    let sim = sim("http://127.0.0.1:9").await;
    let http = reqwest::Client::new();
    let res = http
        .put(format!("{}/faults", sim.url()))
        .json(&json!({"status": 503, "for_ms": 2000}))
        .send()
        .await
        .unwrap();
    // The window began before the answer came, so it is over by this time;
    // 2 s is long enough for the two calls below to fall inside it.
    let over = tokio::time::Instant::now() + Duration::from_millis(2050);
    assert_eq!(res.status(), 200);
    let active: Value = res.json().await.unwrap();
    assert_eq!(active["active"]["faults"]["status"], 503);

    assert_eq!(call(&sim, &confirm("1")).await.0, 503);
    assert_eq!(call(&sim, &confirm("1")).await.0, 503);
    tokio::time::sleep_until(over).await;
    assert_eq!(call(&sim, &confirm("1")).await.0, 200);
    let got = sim.received();
    assert_eq!(
        got.iter()
            .map(|r| (r.fault, r.ok, r.answered))
            .collect::<Vec<_>>(),
        [
            (true, false, Some(503)),
            (true, false, Some(503)),
            (false, true, Some(200))
        ]
    );
    assert_eq!(sim.received_ok().len(), 1);

    // By count.
    sim.set_faults(Faults {
        status: Some(500),
        count: Some(2),
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(call(&sim, &confirm("2")).await.0, 500);
    assert_eq!(call(&sim, &confirm("2")).await.0, 500);
    assert_eq!(call(&sim, &confirm("2")).await.0, 200);

    // Until cleared, over HTTP.
    http.put(format!("{}/faults", sim.url()))
        .json(&json!({"status": 502}))
        .send()
        .await
        .unwrap();
    assert_eq!(call(&sim, &confirm("3")).await.0, 502);
    let res = http
        .delete(format!("{}/faults", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(call(&sim, &confirm("3")).await.0, 200);

    for bad in [json!({}), json!({"status": 42}), json!({"statu": 503})] {
        let res = http
            .put(format!("{}/faults", sim.url()))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }
    sim.stop();
}

#[tokio::test]
async fn slow_and_dropped_calls() {
    let sim = sim("http://127.0.0.1:9").await;
    sim.set_faults(Faults {
        delay_ms: Some(300),
        ..Faults::default()
    })
    .unwrap();
    let t = std::time::Instant::now();
    assert_eq!(call(&sim, &confirm("1")).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    sim.set_faults(Faults {
        drop: true,
        ..Faults::default()
    })
    .unwrap();
    let params = confirm("2").signed_params(&sim.url(), APP_ID, SECRET, now_s());
    let res = reqwest::Client::new()
        .post(mt::api_url(&sim.url(), "order/confirm"))
        .timeout(Duration::from_millis(300))
        .body(mt::encode_form(&params))
        .send()
        .await;
    assert!(res.unwrap_err().is_timeout());
    let got = sim.received();
    assert_eq!(got.len(), 2);
    assert!(got[0].ok && !got[0].fault);
    assert!(got[1].fault && !got[1].ok);
    assert_eq!(got[1].answered, None);
    // Not handled: the order was not confirmed.
    assert!(sim.order("2").is_none());
    sim.stop();
}

#[tokio::test]
async fn an_unreachable_gateway_is_status_zero() {
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let sim = sim(&format!("http://{dead}")).await;
    let out = sim.push(order("s1")).await.unwrap();
    assert_eq!(out.status, 0);
    assert!(out.answer["error"].is_string());

    // Pointed at a live gateway afterwards.
    let gw = stub_gateway().await;
    sim.set_gateway_url(&gw.base);
    assert_eq!(sim.push(order("s1")).await.unwrap().status, 200);
    assert_eq!(sim.pushes().len(), 2);
    sim.stop();
}

#[tokio::test]
async fn the_cli_serves_the_platform() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hw-sim"))
        .args([
            "platform",
            "--listen",
            "127.0.0.1:0",
            "--gateway",
            "http://127.0.0.1:9",
            "--app-id",
            APP_ID,
            "--secret",
            SECRET,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line.strip_prefix("delivery platform: ").unwrap().to_owned();
    let (s, body) = call_as(&url, &url, &confirm("5"), APP_ID, SECRET, now_s()).await;
    assert_eq!((s, body.as_str()), (200, mt::ANSWER_OK));
    let got: Vec<Value> = reqwest::get(format!("{url}/received"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["path"], "order/confirm");
    child.kill().await.unwrap();
}

#[test]
fn order_spec_reads_amounts_without_floats() {
    let spec: OrderSpec = serde_json::from_value(json!({
        "store": "s", "items": [{"sku": "a", "quantity": 1, "price": 0.1}], "discount": "1"
    }))
    .unwrap();
    assert_eq!(spec.items[0].price, Yuan(10));
    assert_eq!(spec.discount, Some(Yuan(100)));
    assert!(serde_json::from_value::<OrderSpec>(json!({"shipping_fee": "-1"})).is_err());
}
