//! The terminal's SOAP 1.1 interface, sans-IO: envelopes, WS-Security
//! `UsernameToken`, Faults, the message of every operation, and the WSDL.
//!
//! Style: document/literal wrapped. Every operation `Op` sends one element
//! `tns:Op` in the Body and gets `tns:OpResponse` back, all in the namespace
//! [`NS`] with qualified child elements. Errors are SOAP 1.1 Faults whose
//! `detail` holds `tns:error` with the same stable `code` as the REST problem
//! documents. Both sides use this module: the gateway reads requests and
//! writes responses, `terminal-sdk` the opposite.
//!
//! Parsing is built on quick-xml only, through a bounded tree (see
//! [`xml`]): DTDs are refused before parsing starts, depth is bounded while
//! streaming, and a body payload that is not exactly one known operation in
//! [`NS`] is a Fault, never an empty success.

use std::fmt;

pub mod messages;
pub mod wsdl;
pub mod xml;

pub use messages::*;
use xml::{Element, Writer};

/// The service's target namespace. Stable: a new incompatible version gets a
/// new namespace (`…:v2`).
pub const NS: &str = "urn:smart-terminal:gateway:v1";
/// SOAP 1.1 envelope namespace.
pub const SOAP11_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace: recognised only to refuse it clearly.
pub const SOAP12_ENV: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Security 1.0 secext namespace.
pub const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// The only password type accepted: the key itself, over TLS.
pub const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
/// Largest request the endpoint reads.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Largest response a client reads (a long ListOrders page).
pub const MAX_RESPONSE: usize = 32 * 1024 * 1024;

// ---------------------------------------------------------------------- Fault

/// Whose fault a Fault is (SOAP 1.1 `faultcode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The envelope is not SOAP 1.1 (e.g. SOAP 1.2).
    VersionMismatch,
    /// A header marked `mustUnderstand` that the service does not know.
    MustUnderstand,
    /// The caller's request is wrong; retrying it unchanged will not help.
    Client,
    /// The service failed; the same request may succeed later.
    Server,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::VersionMismatch => "VersionMismatch",
            FaultKind::MustUnderstand => "MustUnderstand",
            FaultKind::Client => "Client",
            FaultKind::Server => "Server",
        }
    }

    fn parse(local: &str) -> FaultKind {
        // Dotted refinements (`Client.Auth`) keep their class.
        match local.split('.').next().unwrap_or("") {
            "VersionMismatch" => FaultKind::VersionMismatch,
            "MustUnderstand" => FaultKind::MustUnderstand,
            "Server" => FaultKind::Server,
            _ => FaultKind::Client,
        }
    }
}

/// A SOAP Fault: whose fault, the stable machine `code`, a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub code: String,
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} fault {}: {}",
            self.kind.as_str(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for Fault {}

impl Fault {
    pub fn new(kind: FaultKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Fault {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn client(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(FaultKind::Client, code, message)
    }

    pub fn server(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(FaultKind::Server, code, message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::client("invalid_request", message)
    }

    /// The whole response envelope carrying this Fault.
    pub fn to_envelope(&self) -> String {
        let mut w = Writer::default();
        w.out.push_str(ENVELOPE_OPEN);
        w.out.push_str("<soap:Body><soap:Fault><faultcode>soap:");
        w.out.push_str(self.kind.as_str());
        w.out.push_str("</faultcode><faultstring>");
        xml::escape_into(&mut w.out, &self.message);
        w.out.push_str("</faultstring><detail>");
        w.open("error");
        w.text("code", &self.code);
        w.text("message", &self.message);
        w.close("error");
        w.out
            .push_str("</detail></soap:Fault></soap:Body></soap:Envelope>");
        w.out
    }

    fn from_element(f: &Element) -> Fault {
        let mut kind = FaultKind::Client;
        let mut string = String::new();
        let mut code = None;
        for c in &f.children {
            match c.name.as_str() {
                "faultcode" => {
                    let t = c.text.trim();
                    kind = FaultKind::parse(t.rsplit(':').next().unwrap_or(t));
                }
                "faultstring" => string = c.text.clone(),
                "detail" => {
                    code = c
                        .children
                        .iter()
                        .find(|e| e.is(NS, "error"))
                        .and_then(|e| e.children.iter().find(|x| x.is(NS, "code")))
                        .map(|x| x.text.trim().to_owned());
                }
                _ => {}
            }
        }
        let code = code.unwrap_or_else(|| match kind {
            FaultKind::Server => "internal".into(),
            FaultKind::VersionMismatch => "soap_version_mismatch".into(),
            FaultKind::MustUnderstand => "must_understand".into(),
            FaultKind::Client => "client_fault".into(),
        });
        Fault {
            kind,
            code,
            message: string,
        }
    }
}

// ------------------------------------------------------------------ envelopes

const ENVELOPE_OPEN: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" "#,
    r#"xmlns:tns="urn:smart-terminal:gateway:v1">"#
);

/// A WS-Security `UsernameToken`: here the terminal id and its key.
#[derive(Clone, PartialEq, Eq)]
pub struct UsernameToken {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for UsernameToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsernameToken")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A request envelope whose structure is valid. The operation is decoded
/// separately ([`RequestEnvelope::request`]) so that the caller can
/// authenticate first and never tell a stranger what a valid request is.
#[derive(Debug)]
pub struct RequestEnvelope {
    /// `Err` when the Security header is there but unusable.
    pub token: Result<Option<UsernameToken>, Fault>,
    payload: Element,
}

impl RequestEnvelope {
    /// The name of the body's payload element, for logs.
    pub fn operation_name(&self) -> &str {
        &self.payload.name
    }

    pub fn request(&self) -> Result<Request, Fault> {
        Request::read(&self.payload)
    }
}

/// Reads a request envelope: SOAP 1.1, at most [`MAX_REQUEST`] bytes.
pub fn parse_request(input: &[u8]) -> Result<RequestEnvelope, Fault> {
    let root = xml::parse(input, MAX_REQUEST)?;
    let (header, payload) = split_envelope(root)?;
    let token = match header {
        Some(h) => read_header(&h),
        None => Ok(None),
    };
    // A failed mustUnderstand is reported before anything else.
    if let Err(f) = &token
        && f.kind == FaultKind::MustUnderstand
    {
        return Err(f.clone());
    }
    Ok(RequestEnvelope { token, payload })
}

fn split_envelope(root: Element) -> Result<(Option<Element>, Element), Fault> {
    if root.name != "Envelope" || (root.ns != SOAP11_ENV && root.ns != SOAP12_ENV) {
        if root.name == "Envelope" {
            return Err(Fault::new(
                FaultKind::VersionMismatch,
                "soap_version_mismatch",
                format!(
                    "the Envelope namespace must be {SOAP11_ENV} (SOAP 1.1), got {:?}",
                    root.ns
                ),
            ));
        }
        return Err(Fault::client(
            "not_soap",
            format!("expected a SOAP 1.1 Envelope, got {}", root.qname()),
        ));
    }
    if root.ns == SOAP12_ENV {
        return Err(Fault::new(
            FaultKind::VersionMismatch,
            "soap_version_mismatch",
            "SOAP 1.2 is not supported: send a SOAP 1.1 envelope (namespace http://schemas.xmlsoap.org/soap/envelope/, Content-Type text/xml) as the WSDL describes",
        ));
    }
    let mut header = None;
    let mut body = None;
    for child in root.children {
        match (child.ns == SOAP11_ENV, child.name.as_str()) {
            (true, "Header") if header.is_none() && body.is_none() => header = Some(child),
            (true, "Body") if body.is_none() => body = Some(child),
            _ => {
                return Err(Fault::client(
                    "not_soap",
                    format!("unexpected {} in the Envelope", child.qname()),
                ));
            }
        }
    }
    let body = body.ok_or_else(|| Fault::client("not_soap", "the Envelope has no Body"))?;
    let mut entries = body.children.into_iter();
    let payload = entries.next().ok_or_else(|| {
        Fault::client("unknown_operation", "the Body is empty: name an operation")
    })?;
    if entries.next().is_some() {
        return Err(Fault::invalid("the Body must hold exactly one operation"));
    }
    Ok((header, payload))
}

fn read_header(header: &Element) -> Result<Option<UsernameToken>, Fault> {
    let mut token = None;
    for entry in &header.children {
        if entry.is(WSSE, "Security") {
            if token.is_some() {
                return Err(Fault::client(
                    "unauthorized",
                    "more than one Security header",
                ));
            }
            token = Some(read_security(entry)?);
        } else if matches!(entry.attr(SOAP11_ENV, "mustUnderstand"), Some("1" | "true")) {
            return Err(Fault::new(
                FaultKind::MustUnderstand,
                "must_understand",
                format!("header {} is not understood here", entry.qname()),
            ));
        }
    }
    Ok(token)
}

fn read_security(sec: &Element) -> Result<UsernameToken, Fault> {
    let bad = |m: &str| Fault::client("unauthorized", m.to_owned());
    let ut = sec
        .children
        .iter()
        .find(|e| e.is(WSSE, "UsernameToken"))
        .ok_or_else(|| bad("the Security header has no UsernameToken"))?;
    let username = ut
        .children
        .iter()
        .find(|e| e.is(WSSE, "Username"))
        .ok_or_else(|| bad("the UsernameToken has no Username"))?;
    let password = ut
        .children
        .iter()
        .find(|e| e.is(WSSE, "Password"))
        .ok_or_else(|| bad("the UsernameToken has no Password"))?;
    match password.attr("", "Type") {
        None => {}
        Some(t) if t == PASSWORD_TEXT || t.ends_with("#PasswordText") => {}
        Some(_) => {
            return Err(bad(
                "only PasswordText is supported: the password is the terminal key",
            ));
        }
    }
    Ok(UsernameToken {
        username: username.text.trim().to_owned(),
        password: password.text.trim().to_owned(),
    })
}

/// Writes a request envelope with a WS-Security `UsernameToken` header.
pub fn write_request<M: Message>(token: &UsernameToken, msg: &M) -> String {
    let mut w = Writer::default();
    w.out.push_str(ENVELOPE_OPEN);
    w.out.push_str(concat!(
        "<soap:Header><wsse:Security xmlns:wsse=\"",
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
        "\"><wsse:UsernameToken><wsse:Username>"
    ));
    xml::escape_into(&mut w.out, &token.username);
    w.out.push_str("</wsse:Username><wsse:Password Type=\"");
    w.out.push_str(PASSWORD_TEXT);
    w.out.push_str("\">");
    xml::escape_into(&mut w.out, &token.password);
    w.out
        .push_str("</wsse:Password></wsse:UsernameToken></wsse:Security></soap:Header>");
    write_body(w, msg)
}

/// Writes a response envelope.
pub fn write_response<M: Message>(msg: &M) -> String {
    let mut w = Writer::default();
    w.out.push_str(ENVELOPE_OPEN);
    write_body(w, msg)
}

fn write_body<M: Message>(mut w: Writer, msg: &M) -> String {
    w.out.push_str("<soap:Body>");
    w.open(M::ELEMENT);
    msg.write(&mut w);
    w.close(M::ELEMENT);
    w.out.push_str("</soap:Body></soap:Envelope>");
    w.out
}

/// What went wrong reading a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// The service answered with a Fault.
    Fault(Fault),
    /// The answer is not the expected message (code says how).
    Malformed(Fault),
}

/// Reads a response envelope expected to carry `M`, or the Fault instead.
pub fn parse_response<M: Message>(input: &[u8]) -> Result<M, ResponseError> {
    let root = xml::parse(input, MAX_RESPONSE).map_err(ResponseError::Malformed)?;
    let (_, payload) = split_envelope(root).map_err(ResponseError::Malformed)?;
    if payload.is(SOAP11_ENV, "Fault") {
        return Err(ResponseError::Fault(Fault::from_element(&payload)));
    }
    if !payload.is(NS, M::ELEMENT) {
        return Err(ResponseError::Malformed(Fault::invalid(format!(
            "expected {{{NS}}}{}, got {}",
            M::ELEMENT,
            payload.qname()
        ))));
    }
    M::read(&payload).map_err(ResponseError::Malformed)
}

#[cfg(test)]
mod tests;
