//! A small, bounded XML tree over quick-xml, and the escaping writer.
//!
//! The SOAP messages are tiny, so the whole document becomes a tree of
//! [`Element`]s first and the message types are read from that tree. The
//! reader refuses what a SOAP endpoint never needs and an attacker loves:
//! any DTD (so no entity can be declared), nesting deeper than
//! [`MAX_DEPTH`], references to undeclared entities, and non-UTF-8 input.
//! Depth is checked while streaming, so a deep document costs time linear in
//! the bytes read before the bound, never more.

use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use super::Fault;

/// Deepest element nesting accepted; the deepest real message needs 7.
pub const MAX_DEPTH: usize = 32;

/// Most elements in one document (bounds work on large responses).
const MAX_ELEMENTS: usize = 200_000;

/// An element with its namespace resolved; `ns` is empty when unqualified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    /// All character data directly inside this element, concatenated.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ns: String,
    pub name: String,
    pub value: String,
}

impl Element {
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    pub fn attr(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// `{ns}name`, for messages.
    pub fn qname(&self) -> String {
        if self.ns.is_empty() {
            self.name.clone()
        } else {
            format!("{{{}}}{}", self.ns, self.name)
        }
    }
}

fn invalid(message: impl Into<String>) -> Fault {
    Fault::client("invalid_xml", message)
}

/// Parses one XML document of at most `max_len` bytes into a tree.
pub fn parse(input: &[u8], max_len: usize) -> Result<Element, Fault> {
    if input.len() > max_len {
        return Err(Fault::client(
            "payload_too_large",
            format!("the message is larger than {max_len} bytes"),
        ));
    }
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let text = std::str::from_utf8(input).map_err(|_| invalid("the message is not UTF-8"))?;
    // Refused before any parsing: a DTD is the only way to declare entities.
    if text.contains("<!DOCTYPE") || text.contains("<!ENTITY") {
        return Err(dtd_refused());
    }
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map(|(ns, ev)| (resolved(ns), ev))
            .map_err(|e| invalid(format!("not well-formed XML: {}", short(&e.to_string()))))?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                let _ = start;
                return Err(invalid("more than one root element"));
            }
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Fault::client(
                        "too_deep",
                        format!("elements are nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(invalid("too many elements"));
                }
                stack.push(element(&reader, ns?, &start)?);
            }
            Event::Empty(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Fault::client(
                        "too_deep",
                        format!("elements are nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(invalid("too many elements"));
                }
                let el = element(&reader, ns?, &start)?;
                close(&mut stack, &mut root, el);
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| invalid("an end tag without a start tag"))?;
                close(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                // Raw as refused as referenced (`&#x1;` is refused below).
                if !content.chars().all(is_xml_char) {
                    return Err(not_a_char());
                }
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(invalid("text outside the root element")),
                }
            }
            Event::CData(c) => {
                let content = c.xml10_content();
                if !content.chars().all(is_xml_char) {
                    return Err(not_a_char());
                }
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None => return Err(invalid("CDATA outside the root element")),
                }
            }
            Event::GeneralRef(r) => {
                let top = stack
                    .last_mut()
                    .ok_or_else(|| invalid("a reference outside the root element"))?;
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) if is_xml_char(c) => top.text.push(c),
                        _ => return Err(invalid("an invalid character reference")),
                    }
                } else {
                    let name = r.xml10_content();
                    let value = resolve_predefined_entity(&name)
                        .ok_or_else(|| invalid(format!("unknown entity &{};", short(&name))))?;
                    top.text.push_str(value);
                }
            }
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|_| invalid("a bad XML declaration"))?;
                    if !enc.eq_ignore_ascii_case("utf-8") {
                        return Err(invalid(format!(
                            "only UTF-8 is accepted, not {}",
                            short(&enc)
                        )));
                    }
                }
            }
            Event::DocType(_) => return Err(dtd_refused()),
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(invalid("the document ends inside an element"));
    }
    root.ok_or_else(|| invalid("the document has no element"))
}

fn not_a_char() -> Fault {
    invalid("a character XML 1.0 does not allow")
}

fn dtd_refused() -> Fault {
    Fault::client(
        "dtd_refused",
        "DOCTYPE and entity declarations are not accepted",
    )
}

fn resolved(ns: ResolveResult<'_>) -> Result<String, Fault> {
    match ns {
        ResolveResult::Bound(n) => Ok(n.0.to_owned()),
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(p) => Err(invalid(format!(
            "namespace prefix {} is not declared",
            short(&p)
        ))),
    }
}

fn element(reader: &NsReader<&[u8]>, ns: String, start: &BytesStart<'_>) -> Result<Element, Fault> {
    let name = start.local_name().as_ref().to_owned();
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(|e| invalid(format!("a bad attribute: {}", short(&e.to_string()))))?;
        let key = a.key.as_ref();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let (ans, local) = reader.resolver().resolve_attribute(a.key);
        let ans = resolved(ans)?;
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| invalid(format!("a bad attribute value: {}", short(&e.to_string()))))?;
        attrs.push(Attr {
            ns: ans,
            name: local.as_ref().to_owned(),
            value: value.into_owned(),
        });
    }
    Ok(Element {
        ns,
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

fn close(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Appends `s` escaped for element content or a quoted attribute. Characters
/// XML 1.0 cannot carry become U+FFFD, so the output is always well-formed.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

/// Writes message content with the `tns:` prefix bound to the service
/// namespace on the envelope.
#[derive(Debug, Default)]
pub struct Writer {
    pub out: String,
}

impl Writer {
    pub fn open(&mut self, name: &str) {
        self.out.push_str("<tns:");
        self.out.push_str(name);
        self.out.push('>');
    }

    pub fn close(&mut self, name: &str) {
        self.out.push_str("</tns:");
        self.out.push_str(name);
        self.out.push('>');
    }

    pub fn text(&mut self, name: &str, value: &str) {
        self.open(name);
        escape_into(&mut self.out, value);
        self.close(name);
    }

    pub fn display(&mut self, name: &str, value: impl std::fmt::Display) {
        use std::fmt::Write;
        self.open(name);
        let _ = write!(self.out, "{value}");
        self.close(name);
    }

    pub fn opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.text(name, v);
        }
    }

    pub fn bool(&mut self, name: &str, value: bool) {
        self.text(name, if value { "true" } else { "false" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_text_and_references() {
        let doc = br#"<?xml version="1.0" encoding="utf-8"?>
            <a:root xmlns:a="urn:a" xmlns="urn:d"><child x="1&amp;2">t&lt;&#x41;<![CDATA[<c>]]></child><!-- c --></a:root>"#;
        let root = parse(doc, 1 << 16).unwrap();
        assert!(root.is("urn:a", "root"));
        assert!(root.children[0].is("urn:d", "child"));
        assert_eq!(root.children[0].text, "t<A<c>");
        assert_eq!(root.children[0].attr("", "x"), Some("1&2"));
    }

    #[test]
    fn refuses_what_soap_never_needs() {
        let cases: [(&[u8], &str); 11] = [
            (
                b"<!DOCTYPE x [<!ENTITY e 'boom'>]><x>&e;</x>",
                "dtd_refused",
            ),
            (b"<x>&e;</x>", "invalid_xml"),
            (b"<x>&#0;</x>", "invalid_xml"),
            // Found by fuzzing: the raw character was taken where its
            // reference is refused.
            (b"<x>a\x10b</x>", "invalid_xml"),
            (b"<x><![CDATA[\x01]]></x>", "invalid_xml"),
            (b"<x><y></x>", "invalid_xml"),
            (b"<x/><y/>", "invalid_xml"),
            (b"<p:x/>", "invalid_xml"),
            (b"", "invalid_xml"),
            (
                b"<?xml version=\"1.0\" encoding=\"GBK\"?><x/>",
                "invalid_xml",
            ),
            (b"\xff\xfe<x/>", "invalid_xml"),
        ];
        for (doc, code) in cases {
            let e = parse(doc, 1 << 16).unwrap_err();
            assert_eq!(e.code, code, "{}", String::from_utf8_lossy(doc));
        }
        let deep = "<a>".repeat(100_000);
        assert_eq!(
            parse(deep.as_bytes(), 1 << 20).unwrap_err().code,
            "too_deep"
        );
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes(), 1 << 20).is_ok());
        assert_eq!(parse(b"<x/>", 3).unwrap_err().code, "payload_too_large");
    }

    #[test]
    fn escaping_keeps_output_well_formed() {
        let mut s = String::new();
        escape_into(&mut s, "a<b>&\"'\u{1}\r");
        assert_eq!(s, "a&lt;b&gt;&amp;&quot;&apos;\u{FFFD}&#13;");
        let doc = format!("<x>{s}</x>");
        assert_eq!(
            parse(doc.as_bytes(), 1000).unwrap().text,
            "a<b>&\"'\u{FFFD}\r"
        );
    }
}
