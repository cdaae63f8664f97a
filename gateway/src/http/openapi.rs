//! The REST contract: an OpenAPI 3.1 document generated from the handlers'
//! `#[utoipa::path]` annotations and the wire types' schemas, served at
//! `GET /openapi.json` without a key. Every error answer is the one problem
//! document ([`Problem`]), its `code` one of [`Code::ALL`]; the bearer key
//! scheme is put on every `/api/` operation and `/metrics`.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::RefOr;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::Code;

/// The routes of the router that the document leaves out on purpose: SOAP
/// (described by its own WSDL at `GET /soap/terminal`) and the platforms'
/// signed pushes (each platform's own protocol). `(method, path)`.
pub const NOT_IN_DOCUMENT: &[(&str, &str)] = &[
    ("get", "/soap/terminal"),
    ("post", "/soap/terminal"),
    ("post", "/channels/meituan/{event}"),
    ("post", "/channels/webhook/{platform}"),
];

const DESCRIPTION: &str = "The order gateway's REST API. Every call under `/api/` and \
`/metrics` needs an API key sent as `Authorization: Bearer <key>`; a key has one role \
(admin, app or terminal), and operations marked admin refuse other keys with 403. Every \
error is an `application/problem+json` document whose `code` is stable.\n\n\
Not described here: the SOAP endpoint for counter terminals (`GET /soap/terminal` answers \
its WSDL, `POST /soap/terminal` takes SOAP 1.1), and the signed pushes of the delivery \
platforms (`POST /channels/meituan/{event}`, `POST /channels/webhook/{platform}`), which \
follow each platform's own protocol.";

#[derive(OpenApi)]
#[openapi(
    info(title = "Smart-terminal order gateway", description = DESCRIPTION),
    paths(
        super::readyz,
        super::livez,
        serve_document,
        super::orders::create,
        super::orders::get_one,
        super::orders::act,
        super::catalog::put_product,
        super::catalog::put_store,
        super::catalog::put_item,
        super::catalog::get_catalog,
        super::stores::list,
        super::stores::stream,
        super::stores::terminals,
        super::payments::pay,
        super::payments::list,
        super::payments::refund,
        super::channels::details,
        super::channels::action,
        super::channels::list_skus,
        super::channels::put_sku,
        super::channels::put_store,
        super::channels::held,
        super::outbox::list,
        super::outbox::stats,
        super::outbox::retry,
        super::metrics::scrape,
        super::board::page,
        super::board::script,
        super::board::style,
    ),
    // The path parameters' types (bodies' types are collected from the paths).
    components(schemas(
        Problem,
        proto::order::OrderAction,
        proto::order::StoreId,
        proto::order::Sku,
        proto::order::Channel,
    )),
    modifiers(&Contract),
)]
struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static Document {
    static DOC: LazyLock<Document> = LazyLock::new(ApiDoc::openapi);
    &DOC
}

static JSON: LazyLock<String> =
    LazyLock::new(|| document().to_json().unwrap_or_else(|_| "{}".to_owned()));

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        content_type = "application/json", body = Object)))]
pub async fn serve_document() -> Response {
    let mut r = JSON.as_str().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Routes that are another route's operation under a second path (the
/// router sends both to one handler): `(alias, documented path)`.
pub const ALIASES: &[(&str, &str)] = &[
    ("/healthz", "/readyz"),
    (
        "/api/v1/stores/{store}/stock/{sku}",
        "/api/v1/stores/{store}/items/{sku}",
    ),
];

/// What `POST /api/v1/orders/{id}/payments` answers with 200.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used
pub enum PayAnswer {
    Charge(Box<crate::payments::store::Charge>),
    Cash(crate::payments::cash::CashTender),
}

/// What a third-party store action answers.
#[derive(ToSchema)]
#[allow(dead_code)] // only its schema is used; `channels::action` writes it
pub struct ActionDone {
    pub order_id: String,
    /// The feed event it raised, e.g. `delivering`.
    pub event: String,
    /// Its position in the store's feed.
    pub seq: i64,
}

/// What `GET /api/v1/outbox` answers.
#[derive(ToSchema)]
#[allow(dead_code)] // only its schema is used; `outbox::list` writes it
pub struct OutboxPage {
    pub entries: Vec<crate::outbox::Entry>,
    /// Pass as `after` for the next page.
    pub cursor: i64,
}

/// An error answer (RFC 9457), `application/problem+json`.
#[derive(ToSchema)]
#[allow(dead_code)] // only its schema is used; `problem::problem` writes it
struct Problem {
    /// `urn:smart-terminal:problem:<code>`.
    #[schema(pattern = "^urn:smart-terminal:problem:[a-z_]+$")]
    r#type: String,
    /// The HTTP status's reason phrase.
    title: String,
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    code: Code,
    /// What went wrong, for a person.
    detail: String,
}

impl PartialSchema for Code {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "The stable code of a problem; the HTTP status follows from it.",
                ))
                .enum_values(Some(Code::ALL.iter().map(|c| c.as_str())))
                .build(),
        ))
    }
}

impl ToSchema for Code {
    fn name() -> std::borrow::Cow<'static, str> {
        "ProblemCode".into()
    }
}

/// A quantity sent in a request: a decimal string, or a whole JSON number
/// (a decimal JSON number is refused).
pub fn quantity_in() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(proto::order::Quantity::schema())
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .into()
}

/// The key scheme on `/api/` and `/metrics`; the problem answer on every
/// operation (4XX and 5XX), so each documented route says how it fails.
struct Contract;

impl Modify for Contract {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key as `Authorization: Bearer <key>` (admin, app or terminal).",
                    ))
                    .build(),
            ),
        );
        let problem = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            "Problem",
                        ))))
                        .build(),
                )
                .build()
        };
        // Handlers of different modules share names (`list`, `put_store`):
        // each operation id is prefixed with its tag, so ids are unique.
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.put, &mut item.post]
                .into_iter()
                .flatten()
            {
                let tag = op.tags.as_ref().and_then(|t| t.first()).cloned();
                if let (Some(tag), Some(id)) = (tag, op.operation_id.as_mut()) {
                    *id = format!("{tag}_{id}");
                }
            }
        }
        for (alias, documented) in ALIASES {
            if let Some(item) = doc.paths.paths.get(*documented) {
                let mut item = item.clone();
                for op in [&mut item.get, &mut item.put, &mut item.post]
                    .into_iter()
                    .flatten()
                {
                    op.operation_id = op.operation_id.as_ref().map(|id| {
                        format!(
                            "{id}_at_{}",
                            alias.trim_matches('/').replace(['/', '{', '}'], "_")
                        )
                    });
                }
                doc.paths.paths.insert((*alias).to_owned(), item);
            }
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let keyed = path.starts_with("/api/") || path == "/metrics";
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if keyed {
                    op.security = Some(vec![SecurityRequirement::new(
                        "api_key",
                        Vec::<String>::new(),
                    )]);
                }
                let responses = &mut op.responses.responses;
                responses
                    .entry("4XX".to_owned())
                    .or_insert_with(|| problem("The request was refused: see `code`").into());
                responses
                    .entry("5XX".to_owned())
                    .or_insert_with(|| problem("The gateway or its database is in trouble").into());
            }
        }
    }
}
