//! The terminal's SOAP 1.1 endpoint: `POST /soap/terminal` (document/literal
//! wrapped, WS-Security `UsernameToken`) and its WSDL at
//! `GET /soap/terminal?wsdl`. Envelopes and messages live in `proto::soap`;
//! this module authenticates, calls the same use cases as REST, and turns
//! every [`Error`] into a Fault carrying the REST `code`. Payments are in
//! `soap/payments.rs`.

mod payments;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto::order::{Channel, PaymentStatus, StoreId};
use proto::soap::{
    self, Fault, GetCatalogResponse, GetOrderResponse, HeartbeatResponse, ListOrdersResponse,
    Request, SubmitOrderResponse, UpdateOrderStatusResponse, UsernameToken,
};

use crate::app::AppState;
use crate::catalog;
use crate::clock;
use crate::error::{Code, Error, Result};
use crate::keys::{Principal, Role};
use crate::orders::{self, Created, Filter, Happened, NewLine, NewOrder};

/// Orders in a ListOrders answer when the terminal does not say.
const DEFAULT_LIST_LIMIT: i64 = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/soap/terminal", get(wsdl).post(endpoint))
}

const XML: &str = "text/xml; charset=utf-8";

fn xml_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(XML));
    resp
}

/// SOAP 1.1 answers every Fault with HTTP 500, whoever is at fault.
fn fault_response(f: &Fault) -> Response {
    xml_response(StatusCode::INTERNAL_SERVER_ERROR, f.to_envelope())
}

/// The Fault of `code`: its side (client or server) and its wire string.
fn fault(code: Code, message: impl Into<String>) -> Fault {
    Fault::new(code.soap_fault(), code.as_str(), message)
}

/// Logs like REST (only server faults as errors) and hides 5xx detail.
fn error_fault(e: Error) -> Fault {
    e.log();
    Fault::new(e.fault_kind(), e.code.as_str(), e.message)
}

fn refused(f: Fault) -> Response {
    tracing::debug!(code = %f.code, "SOAP request refused: {}", f.message);
    fault_response(&f)
}

async fn wsdl(State(st): State<AppState>, req: axum::extract::Request) -> Response {
    let wants_wsdl = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.eq_ignore_ascii_case("wsdl")));
    if !wants_wsdl {
        return Error::new(
            Code::WsdlOnly,
            "GET /soap/terminal?wsdl gives the WSDL; operations are POSTed",
        )
        .into_response();
    }
    // The configured public URL (or what a trusted proxy says), never the
    // caller's Host: a WSDL must not point terminals wherever a header says.
    let base = crate::http::extract::public_base(&st.inner, req.headers(), req.extensions());
    xml_response(
        StatusCode::OK,
        soap::wsdl::wsdl(&format!("{base}/soap/terminal")),
    )
}

/// The Fault answered when a request ran out of time (see `http::Limits`).
pub(crate) fn timeout_fault(message: &str) -> Response {
    fault_response(&fault(Code::RequestTimeout, message))
}

async fn endpoint(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refused(fault(
                Code::PayloadTooLarge,
                format!("the message is larger than {} bytes", soap::MAX_REQUEST),
            ));
        }
        Err(e) => {
            let e = crate::http::extract::body_error(e);
            return refused(fault(e.code, e.message));
        }
    };
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let mime = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        // application/soap+xml is SOAP 1.2: let the envelope check say so.
        if !matches!(
            mime.as_str(),
            "text/xml" | "application/xml" | "application/soap+xml"
        ) {
            return refused(fault(
                Code::UnsupportedMediaType,
                "send the envelope as Content-Type: text/xml; charset=utf-8",
            ));
        }
    }
    let env = match soap::parse_request(&body) {
        Ok(env) => env,
        Err(f) => return refused(f),
    };
    let who = match env.token.clone() {
        Err(f) => return refused(f),
        Ok(None) => {
            return refused(fault(
                Code::Unauthorized,
                "missing WS-Security UsernameToken (Username = terminal id, Password = terminal key)",
            ));
        }
        Ok(Some(token)) => match authenticate(&st, &token).await {
            Ok(p) => p,
            Err(e) => return fault_response(&error_fault(e)),
        },
    };
    let request = match env.request() {
        Ok(r) => r,
        Err(f) => return refused(f),
    };
    let op = request.name();
    let started = std::time::Instant::now();
    match dispatch(&st, &who, request).await {
        Ok(xml) => {
            tracing::debug!(op, terminal = ?who.terminal, "SOAP request served");
            crate::meter::soap(op, "", started);
            xml_response(StatusCode::OK, xml)
        }
        Err(e) => {
            crate::meter::soap(op, e.code.as_str(), started);
            fault_response(&error_fault(e))
        }
    }
}

/// A terminal key whose terminal id is the token's Username.
async fn authenticate(st: &AppState, token: &UsernameToken) -> Result<Principal> {
    if token.password.is_empty() || token.password.len() > 256 {
        st.keys.count_failure();
        return Err(Error::unauthorized(
            "the UsernameToken has no usable Password",
        ));
    }
    let who = st.keys.authenticate(&st.db, &token.password).await?;
    let same_terminal = who
        .terminal
        .as_ref()
        .is_some_and(|t| t.as_str() == token.username);
    if who.role != Role::Terminal || who.store.is_none() || !same_terminal {
        st.keys.count_failure();
        return Err(Error::unauthorized(
            "the Username must be the terminal id the key was made for, with a terminal key",
        ));
    }
    Ok(who)
}

fn own_store(who: &Principal) -> Result<StoreId> {
    who.store
        .clone()
        .ok_or_else(|| Error::unauthorized("this key is not bound to a store"))
}

async fn dispatch(st: &AppState, who: &Principal, request: Request) -> Result<String> {
    let store = own_store(who)?;
    match request {
        Request::SubmitOrder(m) => {
            // Scoped by terminal: two terminals may both number sales from 1.
            let terminal = who.terminal.as_ref().map(|t| t.as_str()).unwrap_or("");
            let new = NewOrder {
                store,
                channel: Channel::Terminal,
                platform: None,
                channel_order_id: Some(format!("{terminal}:{}", m.client_order_id)),
                lines: m
                    .lines
                    .into_iter()
                    .map(|l| NewLine {
                        sku: l.sku,
                        quantity: l.quantity,
                        unit_price: l.unit_price,
                    })
                    .collect(),
                note: m.note,
                payment_status: PaymentStatus::Unpaid,
                prepaid: None,
                actor: who.actor().to_string(),
                // soldAt: the sale already happened at the counter.
                happened: m.sold_at.map(|t| Happened {
                    sold_at: t.micros(),
                    catalog_version: m.catalog_version,
                }),
            };
            match orders::create(&st.db, &st.hub, &st.orders, new, None).await? {
                Created::Order { order, replayed } => {
                    Ok(soap::write_response(&SubmitOrderResponse {
                        replayed,
                        order: *order,
                    }))
                }
                Created::Replay { .. } => Err(Error::internal(anyhow::anyhow!(
                    "an idempotency replay without an idempotency key"
                ))),
            }
        }
        Request::GetOrder(m) => {
            let order = orders::get(&st.db, &m.order_id).await?;
            who.check_order(&order.store_id, &m.order_id)?;
            Ok(soap::write_response(&GetOrderResponse { order }))
        }
        Request::ListOrders(m) => {
            let f = Filter {
                statuses: m.statuses,
                channel: m.channel,
                since: m.since,
                limit: m.limit.unwrap_or(DEFAULT_LIST_LIMIT),
            };
            let page = orders::list(&st.db, &store, &f).await?;
            Ok(soap::write_response(&ListOrdersResponse {
                orders: page.orders,
                cursor: page.cursor,
                has_more: page.has_more,
            }))
        }
        Request::UpdateOrderStatus(m) => {
            let guard = |o: &proto::order::Order| who.check_order(&o.store_id, &o.id);
            let order = crate::payments::act_refunding(
                &st.db,
                &st.hub,
                st.payments.as_deref(),
                &m.order_id,
                m.action,
                m.reason,
                &who.actor().to_string(),
                &guard,
            )
            .await?;
            Ok(soap::write_response(&UpdateOrderStatusResponse { order }))
        }
        Request::GetCatalog(m) => {
            let c = catalog::catalog(&st.db, &store).await?;
            let unchanged = m.known_version.as_deref() == Some(c.version.as_str());
            let items = if unchanged { Vec::new() } else { c.items };
            Ok(soap::write_response(&GetCatalogResponse {
                store_id: store,
                store_name: c.store_name,
                version: c.version,
                unchanged,
                items,
            }))
        }
        Request::Heartbeat(m) => {
            let terminal = who
                .terminal
                .clone()
                .ok_or_else(|| Error::unauthorized("this key has no terminal id"))?;
            let at = crate::terminals::record(&st.db, &terminal, &store, &m).await?;
            Ok(soap::write_response(&HeartbeatResponse {
                received_at: clock::rfc3339(at),
            }))
        }
        Request::PayOrder(m) => payments::pay(st, who, m).await,
        Request::GetPayment(m) => payments::get(st, who, m).await,
        Request::RefundOrder(m) => payments::refund_order(st, who, m).await,
        Request::TenderCash(m) => payments::tender_cash(st, who, m).await,
    }
}
