//! Who may do what: keys, roles, and stores kept apart.

use gateway::app::AppState;
use gateway::channels::{Channels, ChannelsConfig, MeituanConfig};
use proto::meituan::{self as mt, NewOrderPush, Push, PushItem};
use proto::order::Unit;
use secrecy::SecretString;
use serde_json::{Value, json};
use tests::{Backend, TestApp, on_both_databases};

on_both_databases!(
    requests_without_a_valid_key_are_refused,
    a_terminal_never_sees_another_store,
    roles_limit_what_a_key_may_do,
    failed_authentications_are_counted,
    recipients_are_for_the_store_and_admins,
);

async fn requests_without_a_valid_key_are_refused(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health needs no key");
    for auth in [
        None,
        Some("Bearer gk_nope"),
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer "),
    ] {
        let mut req = app.http.get(app.url("/api/v1/stores/S001/orders"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["code"], "unauthorized");
    }
    app.stop().await;
}

async fn a_terminal_never_sees_another_store(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    let (_, o) = app.order("S001", &[("COLA", "1")]).await;
    let id = o["id"].as_str().unwrap();
    let other = app.terminal("S002");
    // Another store's order is answered exactly like one that does not
    // exist, so ids cannot be probed.
    let missing = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    for (theirs, none) in [
        (
            app.get_json(&format!("/api/v1/orders/{id}"), other).await,
            app.get_json(&format!("/api/v1/orders/{missing}"), other)
                .await,
        ),
        (
            app.act(id, "accept", other).await,
            app.act(missing, "accept", other).await,
        ),
        (
            app.act(id, "cancel", other).await,
            app.act(missing, "cancel", other).await,
        ),
    ] {
        assert_eq!(
            (theirs.0, theirs.1["code"].as_str()),
            (404, Some("order_not_found")),
            "{}",
            theirs.1
        );
        assert_eq!((none.0, &none.1["code"]), (404, &theirs.1["code"]));
        assert_eq!(
            theirs.1["detail"].as_str().map(|d| d.replace(id, "ID")),
            none.1["detail"].as_str().map(|d| d.replace(missing, "ID")),
            "the same words"
        );
    }
    let refused = [
        app.get_json("/api/v1/stores/S001/orders", other).await,
        app.get_json("/api/v1/stores/S001/catalog", other).await,
        app.post_json(
            "/api/v1/orders",
            other,
            &json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "1"}]}),
        )
        .await,
    ];
    for (s, p) in refused {
        assert_eq!((s, p["code"].as_str()), (403, Some("forbidden")), "{p}");
    }
    let stream = app
        .http
        .get(app.url("/api/v1/stores/S001/orders/stream"))
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 403);
    let (_, after) = app
        .get_json(&format!("/api/v1/orders/{id}"), &app.admin)
        .await;
    assert_eq!(after["status"], "created", "nothing changed");
    assert_eq!(app.queue("S001").await.len(), 1);
    // Its own store works.
    assert_eq!(app.act(id, "accept", app.terminal("S001")).await.0, 200);
    app.stop().await;
}

async fn roles_limit_what_a_key_may_do(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    let t = app.terminal("S001").to_owned();
    for key in [&app.app, &t] {
        let r = app
            .http
            .put(app.url("/api/v1/products/X"))
            .bearer_auth(key)
            .json(&json!({"name": "x", "unit": "piece", "price": "1.00"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "only admins edit the catalog");
    }
    let (_, o) = app.order("S001", &[("COLA", "1")]).await;
    let id = o["id"].as_str().unwrap();
    assert_eq!(
        app.act(id, "accept", &app.app).await.0,
        403,
        "the app cannot accept"
    );
    assert_eq!(
        app.get_json("/api/v1/stores/S001/orders", &app.app).await.0,
        403
    );
    assert_eq!(
        app.get_json(&format!("/api/v1/orders/{id}"), &app.app)
            .await
            .0,
        200
    );
    assert_eq!(
        app.act(id, "cancel", &app.app).await.0,
        200,
        "the customer may cancel"
    );
    // A terminal places counter orders for its own store.
    let (s, o) = app
        .post_json(
            "/api/v1/orders",
            &t,
            &json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "1"}]}),
        )
        .await;
    assert_eq!((s, o["channel"].as_str()), (201, Some("terminal")));
    app.stop().await;
}

async fn failed_authentications_are_counted(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    const RANDOM: usize = 200;
    for i in 0..RANDOM {
        let r = app
            .http
            .get(app.url("/api/v1/stores/S001/orders"))
            .bearer_auth(format!("gk_random_{i}_{}", uuid::Uuid::new_v4().simple()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // The same unknown key twice, a missing header, a malformed one.
    for auth in [
        Some("Bearer gk_nope"),
        Some("Bearer gk_nope"),
        None,
        Some("Basic x"),
    ] {
        let mut req = app.http.get(app.url("/api/v1/stores/S001/orders"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    // The real keys still work after the flood.
    assert_eq!(
        app.get_json("/api/v1/stores/S001/orders", app.terminal("S001"))
            .await
            .0,
        200
    );
    let metrics = app.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("gateway_auth_failures_total "))
        .unwrap_or_else(|| panic!("no gateway_auth_failures_total in {metrics}"));
    assert_eq!(line, format!("gateway_auth_failures_total {}", RANDOM + 4));
    app.stop().await;
}

const APP_ID: &str = "mt-app-auth";
const SECRET: &str = "mt-secret-auth-0123";

/// The Meituan channel on (its API is never called here).
fn with_meituan(s: &mut AppState) {
    let config = ChannelsConfig {
        meituan: Some(MeituanConfig {
            base_url: "http://127.0.0.1:9".into(),
            app_id: APP_ID.into(),
            secret: SecretString::from(SECRET.to_owned()),
            stores: Vec::new(),
        }),
        ..ChannelsConfig::default()
    };
    s.channels = Some(Channels::new(config, s.db.clone()).expect("channels"));
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A new-order push for store S001, signed for `url`.
fn signed_new_order(order_id: &str, url: &str) -> String {
    let push = Push::NewOrder(NewOrderPush {
        order_id: order_id.into(),
        app_poi_code: "S001".into(),
        day_seq: 1,
        ctime: now_s(),
        caution: String::new(),
        recipient_name: "王先生".into(),
        recipient_phone: "13800000000".into(),
        recipient_address: "幸福路 1 号".into(),
        shipping_fee_fen: 500,
        total_fen: 850,
        original_price_fen: 850,
        poi_receive_amount_fen: 700,
        items: vec![PushItem {
            app_food_code: "COLA".into(),
            food_name: "可乐".into(),
            quantity: 1,
            price_fen: 350,
            unit: "份".into(),
        }],
        discounts: Vec::new(),
    });
    mt::encode_form(&push.signed_params(url, APP_ID, SECRET, now_s()))
}

const PUSH_PATH: &str = "/channels/meituan/new_order";

async fn push(app: &TestApp, form: String, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url(PUSH_PATH))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn wsdl_location(app: &TestApp, headers: &[(&str, &str)]) -> String {
    let mut req = app.http.get(app.url("/soap/terminal?wsdl"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = req.send().await.unwrap().text().await.unwrap();
    let at = body.find("location=\"").expect("a location") + "location=\"".len();
    body[at..].split('"').next().unwrap().to_owned()
}

async fn recipients_are_for_the_store_and_admins(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, with_meituan).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    let (s, body) = push(&app, signed_new_order("9001", &app.url(PUSH_PATH)), &[]).await;
    assert_eq!((s, &body["data"]), (200, &json!("ok")), "{body}");
    let (_, page) = app.get_json("/api/v1/stores/S001/orders", &app.admin).await;
    let id = page["orders"][0]["id"]
        .as_str()
        .expect("the pushed order")
        .to_owned();
    let path = format!("/api/v1/orders/{id}/third_party");
    for key in [&app.admin, app.terminal("S001")] {
        let (s, tp) = app.get_json(&path, key).await;
        assert_eq!(
            (s, &tp["recipient"]["name"]),
            (200, &json!("王先生")),
            "{tp}"
        );
    }
    let (s, p) = app.get_json(&path, &app.app).await;
    assert_eq!((s, p["code"].as_str()), (403, Some("forbidden")), "{p}");
    assert!(!p.to_string().contains("13800000000"));
    let (s, p) = app.get_json(&path, app.terminal("S002")).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (404, Some("order_not_found")),
        "{p}"
    );
    app.stop().await;
}

/// The signed URL and the WSDL address come from configuration, not from
/// what a client says in Host or X-Forwarded-*.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_host_headers_change_nothing() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, with_meituan).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    // A push signed for another host, sent naming that host.
    let elsewhere = format!("http://evil.example{PUSH_PATH}");
    for headers in [
        &[("x-forwarded-host", "evil.example")][..],
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "http"),
        ][..],
        &[("host", "evil.example")][..],
    ] {
        let (s, body) = push(&app, signed_new_order("9002", &elsewhere), headers).await;
        assert_eq!(
            (s, &body["data"], &body["error"]["code"]),
            (401, &json!("ng"), &json!(mt::ERR_SIG)),
            "{headers:?}: {body}"
        );
    }
    assert_eq!(app.queue("S001").await.len(), 0, "nothing was taken in");
    let own = app.url("/soap/terminal");
    assert_eq!(wsdl_location(&app, &[]).await, own);
    assert_eq!(
        wsdl_location(
            &app,
            &[
                ("host", "evil.example"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https"),
            ]
        )
        .await,
        own
    );
    app.stop().await;
}

/// Behind a configured proxy: its forwarded headers count, and the
/// configured public URL is what pushes are checked against.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_believed() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| {
        with_meituan(s);
        let inner = std::sync::Arc::make_mut(&mut s.inner);
        inner.public_url = Some("https://gw.example.com".into());
        inner.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
    else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    let public = format!("https://gw.example.com{PUSH_PATH}");
    let (s, body) = push(&app, signed_new_order("9003", &public), &[]).await;
    assert_eq!(s, 200, "signed for the public URL: {body}");
    let edge = format!("https://edge.example{PUSH_PATH}");
    let forwarded = [
        ("x-forwarded-host", "edge.example"),
        ("x-forwarded-proto", "https"),
    ];
    let (s, body) = push(&app, signed_new_order("9004", &edge), &forwarded).await;
    assert_eq!(s, 200, "signed for what the proxy says: {body}");
    // The listening address is not the public URL any more.
    let (s, body) = push(&app, signed_new_order("9005", &app.url(PUSH_PATH)), &[]).await;
    assert_eq!((s, &body["error"]["code"]), (401, &json!(mt::ERR_SIG)));
    assert_eq!(app.queue("S001").await.len(), 2);
    assert_eq!(
        wsdl_location(&app, &[]).await,
        "https://gw.example.com/soap/terminal"
    );
    assert_eq!(
        wsdl_location(&app, &forwarded).await,
        "https://edge.example/soap/terminal"
    );
    app.stop().await;
}
