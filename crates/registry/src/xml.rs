//! A small, bounded XML tree for registry documents.
//!
//! Registry documents come from the network, so the reader refuses what a
//! hostile document needs to hurt us before it can: a size cap checked
//! before parsing, no DOCTYPE (hence no entity declarations, no billion
//! laughs, no external entities), only the five predefined entities and
//! character references, a depth cap and an element count cap. Names are
//! kept as local names (prefixes dropped): the CPPA documents use a `tns:`
//! prefix in some variants and a default namespace in others.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::Error;

/// Bounds applied while reading one document.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
}

impl Limits {
    /// Generous for real CPPs/CPAs (the largest NHN sample is 270 kB with
    /// about 2 000 elements).
    pub const DOCUMENT: Limits = Limits {
        max_bytes: 8 * 1024 * 1024,
        max_depth: 64,
        max_elements: 50_000,
    };
}

/// One element: local name, attributes by local name, children and text.
#[derive(Debug, Default)]
pub(crate) struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The value of the attribute with this local name.
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(name, _)| name == local)
            .map(|(_, value)| value.as_str())
    }

    /// Direct children with this local name.
    pub fn children<'a>(&'a self, local: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == local)
    }

    /// The first direct child with this local name.
    pub fn child(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == local)
    }

    /// The first descendant (depth first) with this local name.
    pub fn descendant(&self, local: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.name == local {
                Some(c)
            } else {
                c.descendant(local)
            }
        })
    }

    /// Trimmed text of the first direct child with this local name.
    pub fn child_text(&self, local: &str) -> Option<&str> {
        self.child(local).map(|c| c.text.trim())
    }
}

/// Parse `bytes` into a tree within `limits`; `what` names the document kind
/// in errors.
pub(crate) fn parse(bytes: &[u8], limits: Limits, what: &'static str) -> Result<Element, Error> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::TooLarge {
            what,
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    let xml_error = |reason: String| Error::Xml { what, reason };
    let refused = |reason: &str| Error::Refused {
        what,
        reason: reason.to_owned(),
    };

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| xml_error(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(refused("DOCTYPE is not allowed")),
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(xml_error("content after the root element".into()));
            }
            Event::Start(start) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(refused("too many elements"));
                }
                if stack.len() >= limits.max_depth {
                    return Err(refused("nesting too deep"));
                }
                stack.push(element_from(&start, what)?);
            }
            Event::Empty(start) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(refused("too many elements"));
                }
                let element = element_from(&start, what)?;
                attach(&mut stack, &mut root, element);
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| xml_error("unbalanced end tag".into()))?;
                attach(&mut stack, &mut root, element);
            }
            Event::Text(text) => {
                let text = text.decode().map_err(|e| xml_error(e.to_string()))?;
                push_text(&mut stack, &text, what)?;
            }
            Event::CData(cdata) => {
                let text = cdata.decode().map_err(|e| xml_error(e.to_string()))?;
                push_text(&mut stack, &text, what)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        let name = reference.decode().map_err(|e| xml_error(e.to_string()))?;
                        predefined_entity(&name)
                            .ok_or_else(|| refused("reference to an undeclared entity"))?
                    }
                    Err(e) => return Err(xml_error(e.to_string())),
                };
                push_text(&mut stack, resolved.encode_utf8(&mut [0; 4]), what)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(xml_error("unexpected end of document".into()));
    }
    root.ok_or_else(|| xml_error("no root element".into()))
}

fn predefined_entity(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

fn push_text(stack: &mut [Element], text: &str, what: &'static str) -> Result<(), Error> {
    match stack.last_mut() {
        Some(parent) => parent.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => {
            return Err(Error::Xml {
                what,
                reason: "text outside the root element".into(),
            })
        }
    }
    Ok(())
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn element_from(start: &BytesStart<'_>, what: &'static str) -> Result<Element, Error> {
    let xml_error = |reason: String| Error::Xml { what, reason };
    let name = local_name(start.name().as_ref());
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| xml_error(e.to_string()))?;
        let value = attribute.unescape_value().map_err(|e| Error::Refused {
            what,
            reason: format!("attribute value: {e}"),
        })?;
        attributes.push((local_name(attribute.key.as_ref()), value.into_owned()));
    }
    Ok(Element {
        name,
        attributes,
        children: Vec::new(),
        text: String::new(),
    })
}

fn local_name(qualified: &[u8]) -> String {
    let local = match qualified.iter().position(|&b| b == b':') {
        Some(colon) => &qualified[colon + 1..],
        None => qualified,
    };
    String::from_utf8_lossy(local).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_doc(xml: &str) -> Result<Element, Error> {
        parse(xml.as_bytes(), Limits::DOCUMENT, "test document")
    }

    #[test]
    fn reads_local_names_attributes_and_entities() {
        let root = parse_doc(
            r#"<a:root xmlns:a="urn:x" a:k="v&amp;w"><a:c>1 &lt; 2 &#65;</a:c><d/></a:root>"#,
        )
        .unwrap();
        assert_eq!(root.name, "root");
        assert_eq!(root.attr("k"), Some("v&w"));
        assert_eq!(root.child_text("c"), Some("1 < 2 A"));
        assert!(root.child("d").is_some());
    }

    #[test]
    fn refuses_doctype_and_undeclared_entities() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert!(matches!(parse_doc(laughs), Err(Error::Refused { .. })));
        let external =
            r#"<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#;
        assert!(matches!(parse_doc(external), Err(Error::Refused { .. })));
        assert!(matches!(
            parse_doc("<foo>&xxe;</foo>"),
            Err(Error::Refused { .. })
        ));
        assert!(matches!(
            parse_doc(r#"<foo a="&xxe;"/>"#),
            Err(Error::Refused { .. })
        ));
    }

    #[test]
    fn refuses_deep_nesting_and_malformed_input() {
        let deep = "<a>".repeat(10_000) + &"</a>".repeat(10_000);
        assert!(matches!(parse_doc(&deep), Err(Error::Refused { .. })));
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "</a>",
            "<a/><b/>",
            "text",
            "<a x=></a>",
        ] {
            assert!(parse_doc(bad).is_err(), "{bad:?} accepted");
        }
    }
}
