//! Reading and writing XML safely: the shared plumbing of the document modules.
//!
//! Reading goes through [`parse`], which refuses DOCTYPEs, caps size, node
//! count and nesting depth, and never panics; documents are read-only views
//! (the bytes that were signed are what the application gets, never a
//! re-serialisation). Writing goes through [`XmlOut`]: UTF-8, no BOM, no
//! declaration, indented, as the reference library writes.

use roxmltree::{Document, Node, ParsingOptions};
use std::borrow::Cow;

use crate::error::{Error, Result};

/// Caps on what a received payload may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest element nesting accepted.
    pub max_depth: usize,
    /// Most nodes (elements, text, comments...) accepted.
    pub max_nodes: u32,
}

impl Default for Limits {
    /// 64 MiB (attachments travel inline as base64), 128 levels, 4 million nodes.
    fn default() -> Limits {
        Limits {
            max_bytes: 64 * 1024 * 1024,
            max_depth: 128,
            max_nodes: 4_000_000,
        }
    }
}

/// The payload as text. The encoding is the one its XML declaration names
/// (KITH messages are often ISO-8859-1), else UTF-8 with or without a byte
/// order mark; bytes that are not valid in that encoding are an error, never
/// replaced. The original bytes stay what the application is handed.
pub(crate) fn as_text<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Cow<'a, str>> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let (body, offset) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (rest, 3),
        None => (bytes, 0),
    };
    match declared_encoding(body) {
        Some(encoding) if encoding != encoding_rs::UTF_8 => encoding
            .decode_without_bom_handling_and_without_replacement(body)
            .ok_or_else(|| Error::NotWellFormed {
                reason: format!("not valid {} text", encoding.name()),
            }),
        _ => std::str::from_utf8(body)
            .map(Cow::Borrowed)
            .map_err(|e| Error::NotWellFormed {
                reason: format!("not UTF-8 at byte {}", e.valid_up_to() + offset),
            }),
    }
}

/// The encoding named by `<?xml ... encoding="…"?>` at the very start, if any.
fn declared_encoding(body: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let declaration = body.strip_prefix(b"<?xml")?;
    let end = declaration.iter().position(|&b| b == b'>')?;
    let declaration = std::str::from_utf8(&declaration[..end]).ok()?;
    let after = &declaration[declaration.find("encoding")? + "encoding".len()..];
    let after = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let label = after[1..].split(quote).next()?;
    encoding_rs::Encoding::for_label(label.trim().as_bytes())
}

/// Parse text into a read-only tree within `limits`.
pub(crate) fn parse_text<'a>(text: &'a str, limits: &Limits) -> Result<Document<'a>> {
    prescan(text, limits.max_depth)?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
    };
    let document = Document::parse_with_options(text, options).map_err(|error| match error {
        roxmltree::Error::DtdDetected => Error::DoctypeForbidden,
        other => Error::NotWellFormed {
            reason: other.to_string(),
        },
    })?;
    Ok(document)
}

/// A streaming pass that refuses deep nesting and DOCTYPEs before the tree
/// parser sees the text (the tree parser recurses per level).
fn prescan(text: &str, max_depth: usize) -> Result<()> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut depth = 0usize;
    loop {
        match reader.read_event() {
            Ok(Event::Start(_)) => {
                depth += 1;
                if depth > max_depth {
                    return Err(Error::TooDeep { limit: max_depth });
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::DocType(_)) => return Err(Error::DoctypeForbidden),
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(error) => {
                return Err(Error::NotWellFormed {
                    reason: format!("{error} at byte {}", reader.error_position()),
                })
            }
        }
    }
}

/// The expanded name of an element as `{namespace}local`, for error messages.
pub(crate) fn expanded_name(node: Node<'_, '_>) -> String {
    match node.tag_name().namespace() {
        Some(ns) => format!("{{{ns}}}{}", node.tag_name().name()),
        None => node.tag_name().name().to_string(),
    }
}

/// Whether `node` is an element named `name` in namespace `ns`.
pub(crate) fn is(node: &Node<'_, '_>, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(ns)
}

/// The first child element of `node` named `name` in namespace `ns`.
pub(crate) fn child<'a, 'i>(node: Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| is(c, ns, name))
}

/// All child elements of `node` named `name` in namespace `ns`.
pub(crate) fn children<'a, 'i>(node: Node<'a, 'i>, ns: &str, name: &str) -> Vec<Node<'a, 'i>> {
    node.children().filter(|c| is(c, ns, name)).collect()
}

/// The element at a `/`-separated path below `node`, all in namespace `ns`.
pub(crate) fn path<'a, 'i>(node: Node<'a, 'i>, ns: &str, path: &str) -> Option<Node<'a, 'i>> {
    path.split('/')
        .try_fold(node, |current, step| child(current, ns, step))
}

/// The trimmed text of an element (all its text, as .NET's `XElement.Value`),
/// `None` when absent or blank.
pub(crate) fn text_of(node: Option<Node<'_, '_>>) -> Option<String> {
    let node = node?;
    let text: String = node
        .descendants()
        .filter(Node::is_text)
        .filter_map(|t| t.text())
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The text of the element at `path` below `node`.
pub(crate) fn path_text(node: Node<'_, '_>, ns: &str, at: &str) -> Option<String> {
    text_of(path(node, ns, at))
}

/// An attribute's trimmed value, `None` when absent or blank.
pub(crate) fn attr(node: Option<Node<'_, '_>>, name: &str) -> Option<String> {
    let value = node?.attribute(name)?.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// A coded value (`V`, `DN`, `S` attributes) as the KITH standards use them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Code {
    /// The code (`V`).
    pub v: String,
    /// Its display name (`DN`).
    pub dn: Option<String>,
    /// The code system OID (`S`).
    pub s: Option<String>,
}

impl Code {
    /// A code with display name and no code system.
    pub fn new(v: impl Into<String>, dn: impl Into<String>) -> Code {
        Code {
            v: v.into(),
            dn: Some(dn.into()),
            s: None,
        }
    }

    /// Add a code system.
    pub fn with_system(mut self, s: impl Into<String>) -> Code {
        self.s = Some(s.into());
        self
    }

    /// Read a coded element; `None` when it or its `V` is absent.
    pub(crate) fn read(node: Option<Node<'_, '_>>) -> Option<Code> {
        Some(Code {
            v: attr(node, "V")?,
            dn: attr(node, "DN"),
            s: attr(node, "S"),
        })
    }

    pub(crate) fn attributes(&self) -> Vec<(&str, &str)> {
        let mut attributes = vec![("V", self.v.as_str())];
        if let Some(dn) = &self.dn {
            attributes.push(("DN", dn));
        }
        if let Some(s) = &self.s {
            attributes.push(("S", s));
        }
        attributes
    }
}

/// An indenting XML writer: UTF-8, no BOM, no declaration.
pub(crate) struct XmlOut {
    writer: quick_xml::Writer<Vec<u8>>,
}

impl XmlOut {
    pub(crate) fn new() -> XmlOut {
        XmlOut {
            writer: quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2),
        }
    }

    fn write(&mut self, event: quick_xml::events::Event<'_>) {
        // Writing into a Vec<u8> has no I/O to fail.
        self.writer
            .write_event(event)
            .expect("writing XML into memory cannot fail");
    }

    pub(crate) fn start(&mut self, name: &str, attributes: &[(&str, &str)]) {
        let start =
            quick_xml::events::BytesStart::new(name).with_attributes(attributes.iter().copied());
        self.write(quick_xml::events::Event::Start(start));
    }

    pub(crate) fn end(&mut self, name: &str) {
        self.write(quick_xml::events::Event::End(
            quick_xml::events::BytesEnd::new(name),
        ));
    }

    pub(crate) fn empty(&mut self, name: &str, attributes: &[(&str, &str)]) {
        let start =
            quick_xml::events::BytesStart::new(name).with_attributes(attributes.iter().copied());
        self.write(quick_xml::events::Event::Empty(start));
    }

    pub(crate) fn text_element(&mut self, name: &str, text: &str) {
        self.start(name, &[]);
        self.write(quick_xml::events::Event::Text(
            quick_xml::events::BytesText::new(text),
        ));
        self.end(name);
    }

    /// Insert well-formed XML text as it is.
    pub(crate) fn raw(&mut self, xml_text: &str) {
        self.write(quick_xml::events::Event::Text(
            quick_xml::events::BytesText::from_escaped(xml_text),
        ));
    }

    pub(crate) fn code(&mut self, name: &str, code: &Code) {
        self.empty(name, &code.attributes());
    }

    pub(crate) fn finish(self) -> String {
        String::from_utf8(self.writer.into_inner()).expect("the writer only writes UTF-8 strings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_doctype() {
        let xml = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>"#;
        assert_eq!(
            parse_text(xml, &Limits::default()).unwrap_err(),
            Error::DoctypeForbidden
        );
        let external = r#"<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>"#;
        assert_eq!(
            parse_text(external, &Limits::default()).unwrap_err(),
            Error::DoctypeForbidden
        );
    }

    #[test]
    fn caps_depth_without_overflowing() {
        let deep = format!("{}{}", "<a>".repeat(200_000), "</a>".repeat(200_000));
        let limits = Limits {
            max_nodes: u32::MAX,
            ..Limits::default()
        };
        assert_eq!(
            parse_text(&deep, &limits).unwrap_err(),
            Error::TooDeep { limit: 128 }
        );
        let ok = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(parse_text(&ok, &limits).is_ok());
    }

    #[test]
    fn caps_size_and_nodes() {
        let limits = Limits {
            max_bytes: 10,
            max_depth: 10,
            max_nodes: 5,
        };
        assert_eq!(
            as_text(b"<a>0123456789</a>", &limits).unwrap_err(),
            Error::TooLarge {
                size: 17,
                limit: 10
            }
        );
        let many = format!("<a>{}</a>", "<b/>".repeat(10));
        assert!(matches!(
            parse_text(&many, &limits),
            Err(Error::NotWellFormed { .. })
        ));
    }

    #[test]
    fn garbage_is_not_well_formed() {
        for junk in [
            "",
            "<",
            "<a>",
            "<a></b>",
            "just text",
            "<a x='1' x='2'/>",
            "<a>&undefined;</a>",
            "<p:a/>",
        ] {
            assert!(
                matches!(
                    parse_text(junk, &Limits::default()),
                    Err(Error::NotWellFormed { .. })
                ),
                "{junk:?}"
            );
        }
        assert!(matches!(
            as_text(b"<a>\xff</a>", &Limits::default()),
            Err(Error::NotWellFormed { .. })
        ));
        assert_eq!(
            as_text(b"\xEF\xBB\xBF<a/>", &Limits::default()).unwrap(),
            "<a/>"
        );
    }

    #[test]
    fn writer_indents_without_declaration() {
        let mut out = XmlOut::new();
        out.start("A", &[("xmlns", "urn:x")]);
        out.text_element("B", "x & <y>");
        out.code("C", &Code::new("1", "OK"));
        out.end("A");
        assert_eq!(
            out.finish(),
            "<A xmlns=\"urn:x\">\n  <B>x &amp; &lt;y&gt;</B>\n  <C V=\"1\" DN=\"OK\"/>\n</A>"
        );
    }
}
