//! A TCP forwarder between a counter agent and its gateway, as the office
//! harness and the tests use it: it can be cut (new connections closed at
//! once, open ones dropped — the network gone) and pointed at a gateway
//! restarted elsewhere.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Link {
    /// `http://127.0.0.1:port`, for the agent's `gateway_url`.
    pub url: String,
    /// `false` cuts the line.
    pub up: watch::Sender<bool>,
    upstream: Arc<Mutex<String>>,
}

impl Link {
    /// Forwards to `upstream` (`host:port`) on a free local port.
    pub async fn start(upstream: impl Into<String>) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (up, rx) = watch::channel(true);
        let target = Arc::new(Mutex::new(upstream.into()));
        let t = Arc::clone(&target);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*rx.borrow() {
                    drop(client);
                    continue;
                }
                let addr = t.lock().map(|a| a.clone()).unwrap_or_default();
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(addr.as_str()).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Link {
            url,
            up,
            upstream: target,
        })
    }

    /// New connections go to `addr` from now on.
    pub fn point_at(&self, addr: &str) {
        if let Ok(mut a) = self.upstream.lock() {
            *a = addr.to_owned();
        }
    }
}
