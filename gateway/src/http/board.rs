//! The store board: one page for a TV or tablet in the store
//! (`GET /board/{store}`), its script and its style, embedded in the binary.
//! The page calls only the REST API it already has — the store queue, its
//! feed stream and the order actions — with the terminal key staff type in
//! once (kept in the browser's localStorage), sent as `Authorization:
//! Bearer`. It reads the stream with `fetch` rather than `EventSource`,
//! which cannot send that header: so the key never goes into a URL (and the
//! access log) nor into a cookie (that other pages could ride on).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto::order::StoreId;

use crate::app::AppState;
use crate::error::Result;
use crate::http::extract::Path;

const PAGE: &str = include_str!("board/board.html");
const SCRIPT: &str = include_str!("board/board.js");
const STYLE: &str = include_str!("board/board.css");

/// Only this gateway's own files, no inline script or style, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/board/{store}", get(page))
        .route("/board/assets/board.js", get(script))
        .route("/board/assets/board.css", get(style))
}

/// The page is the same for every store (the script reads the store from
/// its URL); the store id is checked so a bad link says so at once. Whether
/// the store exists is not told to a caller without a key.
#[utoipa::path(get, path = "/board/{store}", tag = "board", params(("store" = StoreId, Path)),
    responses((status = 200, description = "The board page", content_type = "text/html", body = String)))]
async fn page(Path(store): Path<String>) -> Result<Response> {
    StoreId::parse(&store)?;
    Ok(asset("text/html; charset=utf-8", PAGE, "no-store"))
}

#[utoipa::path(get, path = "/board/assets/board.js", tag = "board",
    responses((status = 200, description = "The board's script", content_type = "text/javascript", body = String)))]
async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT, "no-cache")
}

#[utoipa::path(get, path = "/board/assets/board.css", tag = "board",
    responses((status = 200, description = "The board's style", content_type = "text/css", body = String)))]
async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE, "no-cache")
}

fn asset(content_type: &'static str, body: &'static str, cache: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}
