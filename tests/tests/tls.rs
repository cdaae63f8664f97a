//! Outbound TLS end to end: the real gateway charging the provider
//! simulator over HTTPS (certificates made per test by `hw_sim::tls`),
//! WeChat Pay's client certificate on `/secapi/`, servers the gateway must
//! not trust, answers signed with the configured type only, answers too
//! large to read, the platform client over HTTPS, and PostgreSQL's TLS
//! modes. Charges run on SQLite (TLS is the same whatever the database);
//! the PostgreSQL test needs the local server.

use std::sync::Arc;

use gateway::outbound::ClientIdentity;
use gateway::payments::{Payments, WeChatTls};
use hw_sim::tls::TestPki;
use proto::wechatpay::{self as wx, Params, SignType};
use serde_json::{Value, json};
use tests::Backend;
use tests::pay::{APPID, KEY, MCH_ID, PayGateway, PayOptions, PaySim, alipay_credentials, str_of};

const CODE: &str = "134567890123456789";
const OTHER_CODE: &str = "120061098828009406";
const ALIPAY_CODE: &str = "284567890123456789";

/// The simulator over HTTPS with `pki`'s certificates, `/secapi/` needing
/// a client certificate from `pki`'s client CA.
async fn tls_sim(pki: &TestPki, alipay: bool) -> PaySim {
    let config = pki
        .server_config(Some(&pki.client_ca_pem))
        .expect("server config");
    let sim = PaySim::start_tls(alipay.then(alipay_credentials), config, &pki.ca_pem).await;
    assert!(sim.base.starts_with("https://"), "{}", sim.base);
    sim.provider.require_client_cert(true);
    sim
}

/// The gateway's TLS settings: `pki`'s CA trusted, and its client
/// certificate when `with_cert`.
fn trusting(pki: &TestPki, with_cert: bool) -> WeChatTls {
    WeChatTls {
        extra_ca_pem: Some(pki.ca_pem.clone()),
        client_cert: with_cert.then(|| {
            ClientIdentity::from_pem(&pki.client_cert_pem, &pki.client_key_pem)
                .expect("client identity")
        }),
    }
}

async fn gateway(sim: PaySim, options: PayOptions) -> PayGateway {
    PayGateway::spawn_with(Backend::Sqlite, sim, options)
        .await
        .expect("sqlite is always here")
}

/// The exchanges of an order's first charge as `call: outcome detail` lines.
async fn exchanges(gw: &PayGateway, order: &str) -> Vec<String> {
    gw.payments(order).await["charges"][0]["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .map(|e| {
            format!(
                "{}: {} {}",
                str_of(e, "call"),
                str_of(e, "outcome"),
                str_of(e, "detail")
            )
        })
        .collect()
}

fn charge_state(payments: &Value) -> String {
    str_of(&payments["charges"][0], "state").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_over_tls_pays_reverses_and_refunds_with_the_client_certificate() {
    let pki = TestPki::generate().expect("pki");
    let sim = tls_sim(&pki, false).await;
    let options = PayOptions {
        tls: trusting(&pki, true),
        ..PayOptions::default()
    };
    let gw = gateway(sim, options).await;

    // micropay over HTTPS.
    let (order, charge, entry) = gw.pay_under(json!({"outcome": "success"}), CODE).await;
    assert_eq!(str_of(&charge, "state"), "succeeded", "{charge}");
    assert_eq!(entry.state, "SUCCESS");

    // refund: /secapi/pay/refund, with the client certificate.
    let (status, refund) = gw.refund(&order, "r-1", "5.00").await;
    assert_eq!(status, 200, "{refund}");
    let entry = gw.entry(str_of(&charge, "out_trade_no")).await;
    assert_eq!(entry.refunded_fen, 500);

    // reverse: /secapi/pay/reverse, with the client certificate.
    let (order, charge, _) = gw
        .pay_under(
            json!({"auth_code": OTHER_CODE, "outcome": "userpaying_forever"}),
            OTHER_CODE,
        )
        .await;
    assert_eq!(str_of(&charge, "state"), "reversed", "{charge}");
    assert_eq!(gw.payment_status(&order).await, "unpaid");
    let entry = gw.entry(str_of(&charge, "out_trade_no")).await;
    assert_eq!(entry.state, "REVOKED");
    assert!(entry.reverse_calls >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alipay_over_tls_pays_and_refunds() {
    let pki = TestPki::generate().expect("pki");
    let sim = tls_sim(&pki, true).await;
    let options = PayOptions {
        wechat: false,
        alipay: true,
        tls: trusting(&pki, false),
        ..PayOptions::default()
    };
    let gw = gateway(sim, options).await;
    let (order, charge, entry) = gw
        .pay_under(json!({"outcome": "success"}), ALIPAY_CODE)
        .await;
    assert_eq!(str_of(&charge, "state"), "succeeded", "{charge}");
    assert_eq!(str_of(&charge, "provider"), "alipay");
    assert_eq!(entry.state, "SUCCESS");
    let (status, refund) = gw.refund(&order, "r-1", "21.16").await;
    assert_eq!(status, 200, "{refund}");
    let entry = gw.entry(str_of(&charge, "out_trade_no")).await;
    assert_eq!(entry.refunded_fen, 2116);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_an_unknown_ca_is_refused() {
    let pki = TestPki::generate().expect("pki");
    let sim = tls_sim(&pki, false).await;
    // The gateway trusts another CA only (and the public roots).
    let stranger = TestPki::generate().expect("pki");
    let options = PayOptions {
        tls: trusting(&stranger, true),
        deadline: std::time::Duration::from_millis(500),
        ..PayOptions::default()
    };
    let gw = gateway(sim, options).await;
    let order = gw.order().await;
    let (status, charge) = gw.pay(&order, CODE).await;
    assert_ne!(str_of(&charge, "state"), "succeeded", "{status} {charge}");
    assert_ne!(gw.payment_status(&order).await, "paid");
    let log = exchanges(&gw, &order).await;
    let micropay = log
        .iter()
        .find(|l| l.starts_with("micropay"))
        .unwrap_or_else(|| panic!("{log:?}"));
    assert!(
        micropay.contains("certificate") && micropay.contains("UnknownIssuer"),
        "the refusal names the certificate: {micropay}"
    );
    // The provider never heard of it: no money can have moved.
    assert!(gw.ledger().await.is_empty());

    // The gateway still serves, and the charge waits for the sweeper.
    let state = charge_state(&gw.payments(&order).await);
    assert!(
        ["pending", "created"].contains(&state.as_str()),
        "left for the sweeper: {state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_the_reverse_fails_clearly() {
    let pki = TestPki::generate().expect("pki");
    let sim = tls_sim(&pki, false).await;
    let options = PayOptions {
        tls: trusting(&pki, false),
        deadline: std::time::Duration::from_millis(500),
        ..PayOptions::default()
    };
    let gw = gateway(sim, options).await;
    gw.scenario(json!({"outcome": "userpaying_forever"})).await;
    let order = gw.order().await;
    let (status, charge) = gw.pay(&order, CODE).await;
    assert_ne!(str_of(&charge, "state"), "reversed", "{status} {charge}");
    assert_ne!(str_of(&charge, "state"), "succeeded", "{status} {charge}");
    let log = exchanges(&gw, &order).await;
    let reverse = log
        .iter()
        .find(|l| l.starts_with("reverse"))
        .unwrap_or_else(|| panic!("a reverse was tried: {log:?}"));
    assert!(
        reverse.contains("client certificate"),
        "the reverse says why: {reverse}"
    );
    // The provider's books were not touched by a refused reverse.
    let entry = gw.entry(str_of(&charge, "out_trade_no")).await;
    assert_eq!(entry.state, "USERPAYING");
    assert_eq!(entry.reverse_calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_sha256_answers_verify_with_the_configured_type_only() {
    // PayOptions signs with HMAC-SHA256; the simulator answers in kind
    // without naming the type, as the real service does.
    let pki = TestPki::generate().expect("pki");
    let gw = gateway(
        tls_sim(&pki, false).await,
        PayOptions {
            tls: trusting(&pki, true),
            ..PayOptions::default()
        },
    )
    .await;
    assert_eq!(gw.config.sign_type, SignType::HmacSha256);
    let (_, charge, _) = gw.pay_under(json!({"outcome": "success"}), CODE).await;
    assert_eq!(str_of(&charge, "state"), "succeeded", "{charge}");

    // A raw HMAC answer: no sign_type, and it verifies as HMAC only.
    let mut p = Params::new();
    for (k, v) in [
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "hmachmachmac"),
        ("out_trade_no", str_of(&charge, "out_trade_no")),
    ] {
        p.insert(k.to_owned(), v.to_owned());
    }
    wx::sign_in_place(&mut p, KEY, SignType::HmacSha256);
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca");
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("client");
    let raw = http
        .post(format!("{}{}", gw.sim.base, wx::PATH_ORDERQUERY))
        .body(wx::encode(&p))
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("body");
    let answer = wx::decode(&raw).expect("xml");
    assert_eq!(answer["result_code"], "SUCCESS", "{answer:?}");
    assert!(!answer.contains_key("sign_type"), "{answer:?}");
    assert!(wx::verify_as(&answer, KEY, SignType::HmacSha256));
    assert!(!wx::verify_as(&answer, KEY, SignType::Md5));

    // An MD5-signed answer while HMAC-SHA256 is configured: refused.
    gw.sim
        .provider
        .wechat_sign_answers_with(Some(SignType::Md5));
    gw.scenario(json!({"auth_code": OTHER_CODE, "outcome": "success"}))
        .await;
    let order = gw.order().await;
    let (status, charge) = gw.pay(&order, OTHER_CODE).await;
    assert_ne!(str_of(&charge, "state"), "succeeded", "{status} {charge}");
    let log = exchanges(&gw, &order).await;
    assert!(
        log.iter()
            .any(|l| l.starts_with("micropay") && l.contains("signature does not verify")),
        "{log:?}"
    );
    // Once answers verify again the sweeper settles it, and the gateway's
    // record agrees with the provider's books.
    gw.sim.provider.wechat_sign_answers_with(None);
    let fresh = Payments::new(&gw.config, gw.db.clone(), gateway::events::Hub::default())
        .expect("payments");
    fresh.sweep_once().await.expect("sweep");
    let settled = gw.payments(&order).await;
    let entry = gw
        .entry(str_of(&settled["charges"][0], "out_trade_no"))
        .await;
    match charge_state(&settled).as_str() {
        "succeeded" => assert_eq!(entry.state, "SUCCESS"),
        "reversed" => assert_eq!(entry.state, "REVOKED"),
        other => panic!("not settled: {other} {settled}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_answer_is_refused_and_the_charge_found_by_query() {
    let pki = TestPki::generate().expect("pki");
    let gw = gateway(
        tls_sim(&pki, false).await,
        PayOptions {
            tls: trusting(&pki, true),
            ..PayOptions::default()
        },
    )
    .await;
    gw.scenario(json!({"outcome": "success"})).await;
    // The micropay's answer is 10 MB, streamed without a length.
    gw.sim.provider.flood_answers(1);
    let order = gw.order().await;
    let (status, charge) = gw.pay(&order, CODE).await;
    assert_eq!(status, 200, "{charge}");
    assert_eq!(str_of(&charge, "state"), "succeeded", "{charge}");
    let log = exchanges(&gw, &order).await;
    assert!(
        log[0].starts_with("micropay") && log[0].contains("larger than 65536 bytes"),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.starts_with("orderquery")), "{log:?}");
}

/// A server that answers every request with 10 MB, announced by its length.
async fn huge_server() -> String {
    let body = Arc::new(vec![b'x'; 10 * 1024 * 1024]);
    let app = axum::Router::new().fallback(move || {
        let body = Arc::clone(&body);
        async move { (*body).clone() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_huge_answer_is_refused_unread() {
    let base = huge_server().await;
    let client = gateway::outbound::client(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(5),
        None,
        None,
    )
    .expect("client");
    let resp = client.get(&base).send().await.expect("send");
    let err = gateway::outbound::read_capped(resp, gateway::outbound::MAX_ANSWER_BYTES)
        .await
        .expect_err("too large");
    assert_eq!(
        err,
        gateway::outbound::ReadError::TooLarge {
            limit: gateway::outbound::MAX_ANSWER_BYTES
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_client_calls_the_platform_over_https() {
    use gateway::outbox::{Delivery, Sender};
    let pki = TestPki::generate().expect("pki");
    let mut config = hw_sim::platform::PlatformConfig::new("http://127.0.0.1:9", "app-1", "s3cret");
    config.tls = Some(pki.server_config(None).expect("server config"));
    let platform = hw_sim::platform::PlatformSim::start(config)
        .await
        .expect("platform");
    assert!(platform.url().starts_with("https://"), "{}", platform.url());
    let meituan = gateway::channels::MeituanConfig {
        base_url: platform.url(),
        app_id: "app-1".into(),
        secret: secrecy::SecretString::from("s3cret".to_owned()),
        stores: Vec::new(),
    };
    let timeout = std::time::Duration::from_secs(5);
    let mut params = gateway::outbox::Params::new();
    params.insert("order_id".into(), "424242".into());

    // Trusting the platform's CA: the call arrives, its signature (over
    // the https URL) checks out.
    let trusted =
        gateway::channels::meituan::ApiClient::with_extra_ca(&meituan, timeout, Some(&pki.ca_pem))
            .expect("client");
    assert_eq!(
        trusted.send("order/confirm", &params).await,
        Delivery::Delivered
    );
    let received = platform.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].sig_ok, "{:?}", received[0]);

    // Not trusting it: refused before anything is sent, worth a retry.
    let untrusting = gateway::channels::meituan::ApiClient::with_extra_ca(&meituan, timeout, None)
        .expect("client");
    match untrusting.send("order/confirm", &params).await {
        Delivery::Retry(why) => assert!(why.contains("certificate"), "{why}"),
        other => panic!("expected a retry, got {other:?}"),
    }
    assert_eq!(platform.received().len(), 1);
    platform.stop();
}

/// The local PostgreSQL's `ssl` setting, `None` when it cannot be reached.
async fn server_ssl(url: &str) -> Option<bool> {
    let db = gateway::db::Db::connect(url).await.ok()?;
    let on: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&db.pool)
        .await
        .ok()?;
    Some(on == "on")
}

fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_modes() {
    let url = tests::postgres_admin_url();
    let Some(ssl) = server_ssl(&with_param(&url, "sslmode=disable")).await else {
        tests::postgres_unavailable("cannot connect with sslmode=disable");
        return;
    };
    let in_tls = |url: String| async move {
        let db = gateway::db::Db::connect(&url).await?;
        let on: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&db.pool)
                .await?;
        anyhow::Ok(on)
    };
    assert!(
        !in_tls(with_param(&url, "sslmode=disable"))
            .await
            .expect("disable")
    );
    if !ssl {
        // No TLS at the server: `prefer` falls back, `require` says why.
        assert!(
            !in_tls(with_param(&url, "sslmode=prefer"))
                .await
                .expect("prefer")
        );
        let err = in_tls(with_param(&url, "sslmode=require"))
            .await
            .expect_err("require without server TLS");
        eprintln!("sslmode=require against a server without TLS: {err:#}");
        return;
    }
    assert!(
        in_tls(with_param(&url, "sslmode=require"))
            .await
            .expect("require")
    );
    assert!(
        in_tls(with_param(&url, "sslmode=prefer"))
            .await
            .expect("prefer")
    );
    // verify-full against a server certificate no public CA signed: refused.
    let err = in_tls(with_param(&url, "sslmode=verify-full"))
        .await
        .expect_err("an untrusted server certificate");
    assert!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "{err:#}"
    );
    // verify-full with the server's own certificate as the root, by the
    // name in it (a Debian server's snakeoil certificate says localhost).
    let db = gateway::db::Db::connect(&url).await.expect("connect");
    let cert_file: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&db.pool)
        .await
        .expect("ssl_cert_file");
    let readable = std::fs::read_to_string(&cert_file).is_ok_and(|c| c.contains("CERTIFICATE"));
    if readable && url.contains("@127.0.0.1") {
        let by_name = url.replacen("@127.0.0.1", "@localhost", 1);
        let verified = in_tls(with_param(
            &by_name,
            &format!("sslmode=verify-full&sslrootcert={cert_file}"),
        ))
        .await;
        match verified {
            Ok(on) => assert!(on, "verify-full runs over TLS"),
            // A certificate for another name: refused, and the error says so.
            Err(e) => assert!(format!("{e:#}").contains("certificate"), "{e:#}"),
        }
    } else {
        eprintln!("verify-full with the server's certificate not tried: {cert_file} unreadable");
    }
}
