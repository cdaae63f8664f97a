//! The counter screen: one page (`GET /`), served by the agent, that the
//! cashier's browser shows. It only calls the local API ([`super::api`]).
//!
//! The API has no login, so the agent guards it against other web pages the
//! store PC's browser might open: a request must name this agent in `Host`
//! (its loopback or listen address — a DNS-rebinding page names its own
//! domain) and, when the browser sends `Origin`, come from this agent's own
//! page. Tools without a browser (curl, tests) send no `Origin` and pass.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

const PAGE: &str = include_str!("screen.html");

/// `app` with the screen at `/` and the host/origin guard on every route.
pub fn guarded(app: Router, listen: SocketAddr) -> Router {
    let allowed = Arc::new(Allowed::new(listen));
    app.route("/", get(page))
        .layer(middleware::from_fn_with_state(allowed, guard))
}

async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(PAGE),
    )
        .into_response()
}

/// The `host[:port]` values that name this agent.
struct Allowed {
    hosts: Vec<String>,
    /// Listening on 0.0.0.0 / `::`: any IP literal with the port, never a name.
    any: bool,
    port: u16,
}

impl Allowed {
    fn new(listen: SocketAddr) -> Self {
        let port = listen.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        let own = match listen {
            SocketAddr::V4(a) => format!("{}:{port}", a.ip()),
            SocketAddr::V6(a) => format!("[{}]:{port}", a.ip()),
        };
        if !listen.ip().is_unspecified() && !hosts.contains(&own) {
            hosts.push(own);
        }
        Allowed {
            hosts,
            any: listen.ip().is_unspecified(),
            port,
        }
    }

    fn host_ok(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.contains(&host) || (self.any && host_is_ip(&host, self.port))
    }
}

/// `1.2.3.4:port` or `[v6]:port`: an address, never a name someone could
/// point elsewhere.
fn host_is_ip(host: &str, port: u16) -> bool {
    let Some((ip, p)) = host.rsplit_once(':') else {
        return false;
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    p.parse::<u16>() == Ok(port) && ip.parse::<std::net::IpAddr>().is_ok()
}

async fn guard(State(allowed): State<Arc<Allowed>>, req: Request, next: Next) -> Response {
    match check(&allowed, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(why) => (
            StatusCode::FORBIDDEN,
            Json(json!({"code": "forbidden_origin", "message": why})),
        )
            .into_response(),
    }
}

fn check(allowed: &Allowed, h: &HeaderMap) -> Result<(), String> {
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or("no Host header")?;
    if !allowed.host_ok(host) {
        return Err(format!(
            "Host {host:?} is not this agent; open the screen at http://127.0.0.1:PORT/"
        ));
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let same = origin
            .strip_prefix("http://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Err(format!("requests from {origin:?} are not taken"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn own_page_and_tools_pass_other_sites_do_not() {
        let a = Allowed::new("127.0.0.1:7700".parse().unwrap());
        assert!(check(&a, &headers("127.0.0.1:7700", None)).is_ok());
        assert!(
            check(
                &a,
                &headers("localhost:7700", Some("http://localhost:7700"))
            )
            .is_ok()
        );
        // DNS rebinding: the attacker's name resolves to 127.0.0.1.
        assert!(check(&a, &headers("evil.example:7700", None)).is_err());
        // A form on another site posting to the agent.
        assert!(check(&a, &headers("127.0.0.1:7700", Some("https://evil.example"))).is_err());
        assert!(check(&a, &headers("127.0.0.1:7701", None)).is_err());
        assert!(check(&a, &HeaderMap::new()).is_err());
    }

    #[test]
    fn a_lan_listen_address_takes_that_address() {
        let a = Allowed::new("192.168.1.20:7700".parse().unwrap());
        assert!(check(&a, &headers("192.168.1.20:7700", None)).is_ok());
        assert!(check(&a, &headers("counter.local:7700", None)).is_err());
        let any = Allowed::new("0.0.0.0:7700".parse().unwrap());
        assert!(check(&any, &headers("10.0.0.5:7700", None)).is_ok());
        assert!(check(&any, &headers("counter.local:7700", None)).is_err());
    }
}
