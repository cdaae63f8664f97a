//! A real gateway on 127.0.0.1:0 with a throwaway SQLite file, seeded with
//! two stores, three products, and keys for admin, app and three terminals.

use std::net::SocketAddr;

use gateway::app::AppState;
use gateway::catalog::{self, ItemChange, ProductSpec};
use gateway::db::Db;
use gateway::http::serve;
use gateway::keys::{self, KeySpec, Role};
use proto::order::{Money, Sku, StoreId, TerminalId, Unit};
use proto::soap::{self, Message, ResponseError, UsernameToken};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

pub struct App {
    pub addr: SocketAddr,
    pub base: String,
    pub db: Db,
    pub admin: String,
    pub app_key: String,
    /// S001-T01, S001-T02 (store S001) and S002-T01 (store S002).
    pub t1: String,
    pub t2: String,
    pub s2: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    _closing: watch::Sender<bool>,
    _dir: tempfile::TempDir,
    _pg: Option<tests::ThrowawayPg>,
}

async fn key(db: &Db, role: Role, store: Option<&str>, terminal: Option<&str>) -> String {
    keys::create(
        db,
        KeySpec {
            role,
            store: store.map(|s| StoreId::parse(s).unwrap()),
            terminal: terminal.map(|t| TerminalId::parse(t).unwrap()),
            label: None,
        },
    )
    .await
    .unwrap()
    .token
}

pub async fn stock(db: &Db, store: &str, sku: &str, on_hand: &str) {
    catalog::put_item(
        db,
        &StoreId::parse(store).unwrap(),
        &Sku::parse(sku).unwrap(),
        ItemChange {
            on_hand: Some(on_hand.into()),
            available: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

impl App {
    pub async fn spawn() -> App {
        Self::spawn_on(None).await
    }

    /// On a throwaway PostgreSQL database instead of SQLite.
    pub async fn spawn_on(pg: Option<tests::ThrowawayPg>) -> App {
        let dir = tempfile::tempdir().unwrap();
        let url = match &pg {
            Some(pg) => pg.url.clone(),
            None => format!("sqlite://{}/gateway.db", dir.path().display()),
        };
        let db = Db::connect(&url).await.unwrap();
        db.migrate_up().await.unwrap();
        for (s, name) in [("S001", "Store one"), ("S002", "Store two")] {
            catalog::put_store(&db, &StoreId::parse(s).unwrap(), name.into())
                .await
                .unwrap();
        }
        for (sku, name, unit, price) in [
            ("COLA", "Cola 330ml", Unit::Piece, "3.50"),
            ("DUCK", "鸭脖 & wings", Unit::Kg, "39.90"),
            ("RARE", "Rare tea", Unit::Piece, "88.00"),
        ] {
            catalog::put_product(
                &db,
                ProductSpec {
                    sku: Sku::parse(sku).unwrap(),
                    name: name.into(),
                    unit,
                    price: Money::parse(price).unwrap(),
                    barcodes: None,
                },
            )
            .await
            .unwrap();
        }
        stock(&db, "S001", "COLA", "100").await;
        stock(&db, "S001", "DUCK", "10.000").await;
        stock(&db, "S001", "RARE", "1").await;
        stock(&db, "S002", "COLA", "100").await;
        let admin = key(&db, Role::Admin, None, None).await;
        let app_key = key(&db, Role::App, None, None).await;
        let t1 = key(&db, Role::Terminal, Some("S001"), Some("S001-T01")).await;
        let t2 = key(&db, Role::Terminal, Some("S001"), Some("S001-T02")).await;
        let s2 = key(&db, Role::Terminal, Some("S002"), Some("S002-T01")).await;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closing_tx, closing_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let mut state = AppState::new(db.clone(), closing_rx);
        state.orders = gateway::orders::Writer::start(&db)
            .await
            .expect("order writer");
        tokio::spawn(async move {
            let _ = serve(listener, state, async {
                let _ = stop_rx.await;
            })
            .await;
        });
        App {
            addr,
            base: format!("http://{addr}"),
            db,
            admin,
            app_key,
            t1,
            t2,
            s2,
            http: reqwest::Client::new(),
            stop: Some(stop_tx),
            _closing: closing_tx,
            _dir: dir,
            _pg: pg,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("{}/soap/terminal", self.base)
    }

    /// POSTs raw bytes as a SOAP 1.1 request; returns status and body.
    pub async fn post_raw(
        &self,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, String) {
        let r = self
            .http
            .post(self.endpoint())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn post_xml(&self, body: String) -> (u16, String) {
        self.post_raw("text/xml; charset=utf-8", body).await
    }

    /// One typed call as `terminal` with `key`.
    pub async fn call<Req: Message, Resp: Message>(
        &self,
        terminal: &str,
        key: &str,
        req: &Req,
    ) -> Result<Resp, ResponseError> {
        let token = UsernameToken {
            username: terminal.into(),
            password: key.into(),
        };
        let (status, body) = self.post_xml(soap::write_request(&token, req)).await;
        let got = soap::parse_response::<Resp>(body.as_bytes());
        match &got {
            Ok(_) => assert_eq!(status, 200, "{body}"),
            Err(ResponseError::Fault(_)) => assert_eq!(status, 500, "{body}"),
            Err(ResponseError::Malformed(f)) => panic!("malformed answer {f}: {body}"),
        }
        got
    }

    pub async fn t1<Req: Message, Resp: Message>(&self, req: &Req) -> Result<Resp, ResponseError> {
        self.call("S001-T01", &self.t1.clone(), req).await
    }

    pub async fn get_json(&self, path: &str, key: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A TCP front for the gateway that, on its first connection, forwards the
/// request and drops the connection as soon as the answer starts: the
/// gateway has done the work, the client never hears of it. Later
/// connections pass through.
pub async fn losing_first_answer(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut client, _)) = listener.accept().await {
            let lose = std::mem::replace(&mut first, false);
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                if lose {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let (mut cr, _cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let mut buf = vec![0u8; 65536];
                    let forward = async {
                        loop {
                            let n = cr.read(&mut buf).await.unwrap_or(0);
                            if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let mut one = [0u8; 1];
                    tokio::select! {
                        _ = forward => {}
                        _ = sr.read(&mut one) => {}
                    }
                    // Both ends drop here: the answer is lost.
                } else {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    addr
}
