//! Payload metadata: facts from the MsgHead or AppRec inside a payload that
//! the sender copies into application properties (as strings) before the
//! payload is protected, so that brokers and operators can see what passes
//! without decrypting anything.
//!
//! The keys and values follow the reference library's `MetadataHelper`
//! (HEAD c5d9ab65), read from its code:
//! - `X-MessageInfo-RefToParent` is the text of the first `RefToParent` of
//!   the first `ConversationRef` of the first `MsgInfo`, as .NET's
//!   `XElement.Value` gives it: all its text, not trimmed; absent when
//!   blank.
//! - `X-AttachmentInfo-TotalSizeInBytes` sums, over every `Document` after
//!   the first (anywhere in the MsgHead, in document order), the UTF-8
//!   length of the `XElement.Value` of its first
//!   `RefDoc/Content/Base64Container` (the container in the base64container
//!   namespace only): the base64 text as written, line breaks and
//!   indentation inside text included.
//!
//! "As .NET gives it" means as `XDocument.Load`/`Parse` without
//! `PreserveWhitespace` reads the document: text nodes of XML whitespace
//! only are dropped (kept under `xml:space="preserve"`), all other text
//! is kept whole.

use std::collections::BTreeMap;

use roxmltree::Node;

use crate::apprec;
use crate::error::Result;
use crate::msghead;
use crate::xml::{self, attr, child, children, path_text, Limits};

/// The metadata keys.
pub mod keys {
    /// MsgHead `MsgInfo/Type/@V`; AppRec `MsgType/@V`.
    pub const MESSAGE_TYPE: &str = "X-MessageInfo-Type";
    /// MsgHead `MsgInfo/MsgId`; AppRec `Id`.
    pub const MESSAGE_ID: &str = "X-MessageInfo-MsgId";
    /// MsgHead `MsgInfo/ConversationRef/RefToParent`.
    pub const REF_TO_PARENT: &str = "X-MessageInfo-RefToParent";
    /// MsgHead `MsgInfo/ConversationRef/RefToConversation`.
    pub const REF_TO_CONVERSATION: &str = "X-MessageInfo-RefToConversation";
    /// Namespace of the business document, or of the AppRec.
    pub const SCHEMA_NAMESPACE: &str = "X-MessageInfo-SchemaNamespace";
    /// AppRec `OriginalMsgId/Id`.
    pub const ORIGINAL_MESSAGE_ID: &str = "X-MessageInfo-OriginalMsgId";
    /// AppRec `OriginalMsgId/MsgType/@V`.
    pub const ORIGINAL_MESSAGE_TYPE: &str = "X-MessageInfo-OriginalMsgType";
    /// Sender organisation HER-id.
    pub const SENDER_LVL1: &str = "X-Sender-Lvl1Id";
    /// Sender level-2 HER-id (sub-organisation, department or person).
    pub const SENDER_LVL2: &str = "X-Sender-Lvl2Id";
    /// Receiver organisation HER-id.
    pub const RECEIVER_LVL1: &str = "X-Receiver-Lvl1Id";
    /// Receiver level-2 HER-id.
    pub const RECEIVER_LVL2: &str = "X-Receiver-Lvl2Id";
    /// Number of attachments (documents after the first).
    pub const ATTACHMENT_COUNT: &str = "X-AttachmentInfo-Count";
    /// Their total size.
    pub const ATTACHMENT_TOTAL_SIZE: &str = "X-AttachmentInfo-TotalSizeInBytes";
    /// `True` when any attachment is an external reference, else `False`.
    pub const ATTACHMENT_HAS_EXTERNAL_REFERENCE: &str = "X-AttachmentInfo-HasExternalReference";
}

/// Metadata key → value.
pub type Metadata = BTreeMap<String, String>;

/// Extract the metadata of a payload within the default [`Limits`].
/// A payload that is neither MsgHead nor AppRec yields at most its
/// default namespace; one that is not XML is an error.
pub fn extract(payload: &[u8]) -> Result<Metadata> {
    extract_with_limits(payload, &Limits::default())
}

/// Extract the metadata of a payload within `limits`.
pub fn extract_with_limits(payload: &[u8], limits: &Limits) -> Result<Metadata> {
    let text = xml::as_text(payload, limits)?;
    let document = xml::parse_text(&text, limits)?;
    let root = document.root_element();
    let mut metadata = Metadata::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            metadata.insert(key.to_string(), value);
        }
    };
    // Dispatch on the default namespace in scope, as the reference does.
    match root.default_namespace() {
        Some(msghead::NAMESPACE) => from_msghead(root, &mut put),
        Some(ns @ (apprec::NAMESPACE_1_0 | apprec::NAMESPACE_1_1)) => {
            from_apprec(root, ns, &mut put)
        }
        other => put(keys::SCHEMA_NAMESPACE, other.map(str::to_string)),
    }
    Ok(metadata)
}

type Put<'p> = dyn FnMut(&str, Option<String>) + 'p;

fn from_apprec(root: Node<'_, '_>, ns: &str, put: &mut Put<'_>) {
    if !xml::is(&root, ns, "AppRec") {
        return;
    }
    put(keys::SCHEMA_NAMESPACE, Some(ns.to_string()));
    put(keys::MESSAGE_TYPE, attr(child(root, ns, "MsgType"), "V"));
    put(keys::MESSAGE_ID, path_text(root, ns, "Id"));
    let original = child(root, ns, "OriginalMsgId");
    put(
        keys::ORIGINAL_MESSAGE_ID,
        original.and_then(|o| path_text(o, ns, "Id")),
    );
    put(
        keys::ORIGINAL_MESSAGE_TYPE,
        original.and_then(|o| attr(child(o, ns, "MsgType"), "V")),
    );
    for (element, lvl1, lvl2) in [
        ("Sender", keys::SENDER_LVL1, keys::SENDER_LVL2),
        ("Receiver", keys::RECEIVER_LVL1, keys::RECEIVER_LVL2),
    ] {
        let insts: Vec<Node> = child(root, ns, element)
            .into_iter()
            .flat_map(|p| children(p, ns, "HCP"))
            .flat_map(|h| children(h, ns, "Inst"))
            .collect();
        put(lvl1, first_her_id(&insts, ns));
        let subs: Vec<Node> = ["Dept", "HCPerson"]
            .iter()
            .flat_map(|name| insts.iter().flat_map(move |i| children(*i, ns, name)))
            .collect();
        put(lvl2, first_her_id(&subs, ns));
    }
}

/// The `Id` beside the first `TypeId V="HER"` among `holders`' children.
fn first_her_id(holders: &[Node<'_, '_>], ns: &str) -> Option<String> {
    holders
        .iter()
        .find(|h| {
            children(**h, ns, "TypeId")
                .iter()
                .any(|t| t.attribute("V") == Some("HER"))
        })
        .and_then(|h| path_text(*h, ns, "Id"))
}

fn from_msghead(root: Node<'_, '_>, put: &mut Put<'_>) {
    let ns = msghead::NAMESPACE;
    let info = root.descendants().find(|n| xml::is(n, ns, "MsgInfo"));
    if let Some(info) = info {
        put(keys::MESSAGE_TYPE, attr(child(info, ns, "Type"), "V"));
        put(keys::MESSAGE_ID, path_text(info, ns, "MsgId"));
        let ref_to_parent = child(info, ns, "ConversationRef")
            .and_then(|conversation| child(conversation, ns, "RefToParent"));
        put(keys::REF_TO_PARENT, ref_to_parent.map(dotnet_value));
        put(
            keys::REF_TO_CONVERSATION,
            path_text(info, ns, "ConversationRef/RefToConversation"),
        );
        for (element, lvl1, lvl2) in [
            ("Sender", keys::SENDER_LVL1, keys::SENDER_LVL2),
            ("Receiver", keys::RECEIVER_LVL1, keys::RECEIVER_LVL2),
        ] {
            let organisations =
                child(info, ns, element).map_or_else(Vec::new, |p| children(p, ns, "Organisation"));
            let idents: Vec<Node> = organisations
                .iter()
                .flat_map(|o| children(*o, ns, "Ident"))
                .collect();
            put(lvl1, first_her_id(&idents, ns));
            let level2_idents: Vec<Node> = ["Organisation", "HealthcareProfessional"]
                .iter()
                .flat_map(|name| {
                    organisations
                        .iter()
                        .flat_map(move |o| children(*o, ns, name))
                })
                .flat_map(|l2| children(l2, ns, "Ident"))
                .collect();
            put(lvl2, first_her_id(&level2_idents, ns));
        }
    }
    attachments(root, put);
}

fn attachments(root: Node<'_, '_>, put: &mut Put<'_>) {
    let ns = msghead::NAMESPACE;
    let documents: Vec<Node> = root
        .descendants()
        .filter(|n| xml::is(n, ns, "Document"))
        .collect();
    if let Some(first) = documents.first() {
        let business =
            xml::path(*first, ns, "RefDoc/Content").and_then(|c| c.first_element_child());
        put(
            keys::SCHEMA_NAMESPACE,
            business
                .and_then(|b| b.default_namespace())
                .map(str::to_string),
        );
    }
    let attachments = documents.get(1..).unwrap_or_default();
    let total_size: usize = attachments
        .iter()
        .filter_map(|d| base64_container(*d))
        .map(|container| dotnet_value(container).len())
        .sum();
    let has_external = attachments.iter().any(|d| {
        children(*d, ns, "RefDoc")
            .iter()
            .any(|r| child(*r, ns, "FileReference").is_some())
    });
    put(keys::ATTACHMENT_COUNT, Some(attachments.len().to_string()));
    put(keys::ATTACHMENT_TOTAL_SIZE, Some(total_size.to_string()));
    let has_external = if has_external { "True" } else { "False" };
    put(
        keys::ATTACHMENT_HAS_EXTERNAL_REFERENCE,
        Some(has_external.to_string()),
    );
}

/// The base64 container of an attachment: the first
/// `RefDoc/Content/Base64Container` in document order (XPath's answer,
/// looking into every `RefDoc` and `Content`), the container in its own
/// namespace only, as the reference's XPath asks.
fn base64_container<'a, 'i>(document: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    let ns = msghead::NAMESPACE;
    children(document, ns, "RefDoc")
        .into_iter()
        .flat_map(|r| children(r, ns, "Content"))
        .find_map(|content| {
            child(
                content,
                msghead::BASE64_CONTAINER_NAMESPACE,
                "Base64Container",
            )
        })
}

/// An element's text as .NET's `XElement.Value` gives it after
/// `XDocument.Load` without `PreserveWhitespace`: its descendant text
/// concatenated, untrimmed, without the text nodes that are XML whitespace
/// only (those the reader drops), except under `xml:space="preserve"`.
fn dotnet_value(element: Node<'_, '_>) -> String {
    element
        .descendants()
        .filter(Node::is_text)
        .filter(|t| !is_dropped_whitespace(*t))
        .filter_map(|t| t.text())
        .collect()
}

fn is_dropped_whitespace(text: Node<'_, '_>) -> bool {
    let whitespace_only = text
        .text()
        .unwrap_or_default()
        .chars()
        .all(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    whitespace_only && !preserves_space(text)
}

/// Whether the nearest `xml:space` in scope says `preserve`.
fn preserves_space(node: Node<'_, '_>) -> bool {
    const XML: &str = "http://www.w3.org/XML/1998/namespace";
    node.ancestors()
        .filter(Node::is_element)
        .find_map(|e| e.attribute((XML, "space")))
        .is_some_and(|space| space == "preserve")
}

#[cfg(test)]
mod tests {
    use super::*;
    use helsemelding_testkit::fixtures::read_nhn;

    fn metadata(name: &str) -> Metadata {
        extract(&read_nhn(&format!("messages/{name}"))).unwrap()
    }

    fn expect(actual: &Metadata, expected: &[(&str, &str)]) {
        let expected: Metadata = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(actual, &expected);
    }

    /// Values from the reference library's MetadataHelperTests.
    #[test]
    fn dialogmelding_fixture_matches_reference() {
        expect(
            &metadata("MetadataTestsDialogmelding11.xml"),
            &[
                ("X-MessageInfo-Type", "DIALOG_HELSEFAGLIG"),
                (
                    "X-MessageInfo-MsgId",
                    "de1a95c0-4d0c-11e7-9598-0800200c9a66",
                ),
                (
                    "X-MessageInfo-RefToParent",
                    "d14ea2f3-d796-4d7b-8271-a4480d2b4035",
                ),
                (
                    "X-MessageInfo-RefToConversation",
                    "a14ea2f3-d796-4d7b-8271-a4480d2b4037",
                ),
                (
                    "X-MessageInfo-SchemaNamespace",
                    "http://www.kith.no/xmlstds/dialog/2013-01-23",
                ),
                ("X-AttachmentInfo-Count", "3"),
                ("X-AttachmentInfo-TotalSizeInBytes", "218"),
                ("X-AttachmentInfo-HasExternalReference", "True"),
                ("X-Sender-Lvl1Id", "56704"),
                ("X-Sender-Lvl2Id", "258521"),
                ("X-Receiver-Lvl1Id", "59"),
                ("X-Receiver-Lvl2Id", "90998"),
            ],
        );
    }

    #[test]
    fn apprec_1_0_fixture_matches_reference() {
        expect(
            &metadata("MetadataTests_Apprec10.xml"),
            &[
                ("X-MessageInfo-Type", "APPREC"),
                (
                    "X-MessageInfo-MsgId",
                    "A76D8934-D4BA-4A22-8F5D-5DF5E3FC5756",
                ),
                (
                    "X-MessageInfo-OriginalMsgId",
                    "de1a95c0-4d0c-11e7-9598-0800200c9a66",
                ),
                ("X-MessageInfo-OriginalMsgType", "DIALOG_HELSEFAGLIG"),
                (
                    "X-MessageInfo-SchemaNamespace",
                    "http://www.kith.no/xmlstds/apprec/2004-11-21",
                ),
                ("X-Sender-Lvl1Id", "59"),
                ("X-Sender-Lvl2Id", "90998"),
                ("X-Receiver-Lvl1Id", "56704"),
                ("X-Receiver-Lvl2Id", "258521"),
            ],
        );
    }

    #[test]
    fn apprec_1_1_fixture_matches_reference() {
        expect(
            &metadata("MetadataTests_Apprec11.xml"),
            &[
                ("X-MessageInfo-Type", "APPREC"),
                (
                    "X-MessageInfo-MsgId",
                    "C829A5F9-5BBF-4376-A37F-ADE4B399916C",
                ),
                (
                    "X-MessageInfo-OriginalMsgId",
                    "de1a95c0-4d0c-11e7-9598-0800200c9a66",
                ),
                ("X-MessageInfo-OriginalMsgType", "DIALOG_HELSEFAGLIG"),
                (
                    "X-MessageInfo-SchemaNamespace",
                    "http://www.kith.no/xmlstds/apprec/2012-02-15",
                ),
                ("X-Sender-Lvl1Id", "56704"),
                ("X-Sender-Lvl2Id", "258521"),
                ("X-Receiver-Lvl1Id", "59"),
                ("X-Receiver-Lvl2Id", "90998"),
            ],
        );
    }

    #[test]
    fn other_fixtures() {
        let m = metadata("Dialogtjeneste12_Kommunikasjonstest_Request.xml");
        assert_eq!(m["X-MessageInfo-Type"], "DIALOG_INNBYGGER_TEST");
        assert_eq!(m["X-Sender-Lvl1Id"], "987654");
        assert_eq!(m["X-Sender-Lvl2Id"], "93238");
        assert_eq!(m["X-Receiver-Lvl2Id"], "93246");
        assert_eq!(m["X-AttachmentInfo-Count"], "0");
        assert_eq!(m["X-AttachmentInfo-HasExternalReference"], "False");
        assert!(!m.contains_key("X-MessageInfo-RefToParent"));

        let m = metadata("Helsenorge_Message.xml");
        assert!(!m.contains_key("X-Sender-Lvl1Id"), "ENH only at level 1");
        assert_eq!(m["X-Sender-Lvl2Id"], "109989");
        assert_eq!(m["X-Receiver-Lvl1Id"], "109989");
        assert_eq!(m["X-Receiver-Lvl2Id"], "91095");

        let m = metadata("DIALOG_INNBYGGER_RESEPTFORNYELSE.xml");
        assert_eq!(m["X-AttachmentInfo-Count"], "2");
        assert_eq!(m["X-AttachmentInfo-TotalSizeInBytes"], "0");

        assert!(metadata("SampleMessage.xml").is_empty());
        assert!(
            metadata("SoapFault.xml").is_empty(),
            "prefixed root: no default namespace"
        );
        expect(
            &extract(br#"<x:R xmlns:x="urn:a" xmlns="urn:b"/>"#).unwrap(),
            &[("X-MessageInfo-SchemaNamespace", "urn:b")],
        );
    }

    fn msghead_with(conversation: &str, documents: &str) -> Metadata {
        let xml = format!(
            r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">
  <MsgInfo>
    <Type V="DIALOG_HELSEFAGLIG"/>
    <MsgId>m1</MsgId>
    {conversation}
  </MsgInfo>
  <Document><RefDoc><Content><Dialogmelding xmlns="http://www.kith.no/xmlstds/dialog/2013-01-23"/></Content></RefDoc></Document>
  {documents}
</MsgHead>"#
        );
        extract(xml.as_bytes()).unwrap()
    }

    /// RefToParent is `XElement.Value` of MsgInfo/ConversationRef/RefToParent:
    /// untrimmed, all text nodes but whitespace-only ones, first of each.
    #[test]
    fn ref_to_parent_as_the_reference_reads_it() {
        let m = msghead_with(
            "<ConversationRef><RefToParent>\n  p1 <!-- note --> <b>x</b> y\n</RefToParent>\
             <RefToParent>second</RefToParent><RefToConversation>c1</RefToConversation>\
             </ConversationRef><ConversationRef><RefToParent>other</RefToParent></ConversationRef>",
            "",
        );
        // The " " between the comment and <b> is whitespace only: dropped.
        assert_eq!(m[keys::REF_TO_PARENT], "\n  p1 x y\n");
        assert_eq!(m[keys::REF_TO_CONVERSATION], "c1");
        // Blank: absent. Outside ConversationRef: not looked at.
        let m = msghead_with(
            "<ConversationRef><RefToParent>  \n </RefToParent></ConversationRef>",
            "",
        );
        assert!(!m.contains_key(keys::REF_TO_PARENT), "{m:?}");
        let m = msghead_with("<RefToParent>stray</RefToParent>", "");
        assert!(!m.contains_key(keys::REF_TO_PARENT), "{m:?}");
    }

    /// TotalSizeInBytes: UTF-8 length of each attachment's first
    /// RefDoc/Content/b:Base64Container value, in the base64container
    /// namespace only.
    #[test]
    fn total_size_as_the_reference_computes_it() {
        const B64: &str = r#"xmlns="http://www.kith.no/xmlstds/base64container""#;
        let documents = format!(
            r#"<Document><RefDoc><Content>
      <Base64Container {B64}>
        AAAA<!-- c -->
        BBBB
      </Base64Container>
    </Content></RefDoc></Document>
  <Document><RefDoc><Content><Base64Container>ignored-no-namespace</Base64Container></Content></RefDoc></Document>
  <Document><RefDoc><Content/><Content><Base64Container {B64}>ÆØÅ</Base64Container></Content></RefDoc></Document>
  <Document><RefDoc><Content><Base64Container {B64} xml:space="preserve"><x>AB</x>  </Base64Container></Content></RefDoc></Document>
  <Document><RefDoc><FileReference>https://example.org/f</FileReference></RefDoc></Document>"#
        );
        let m = msghead_with("", &documents);
        // "\n        AAAA" (13) + "\n        BBBB\n      " (20), the
        // namespace-less container not at all, "ÆØÅ" as 6 UTF-8 bytes, "AB"
        // and the preserved "  " (4).
        assert_eq!(m[keys::ATTACHMENT_TOTAL_SIZE], "43");
        assert_eq!(m[keys::ATTACHMENT_COUNT], "5");
        assert_eq!(m[keys::ATTACHMENT_HAS_EXTERNAL_REFERENCE], "True");
        let m = msghead_with("", "");
        assert_eq!(m[keys::ATTACHMENT_TOTAL_SIZE], "0");
        assert_eq!(m[keys::ATTACHMENT_HAS_EXTERNAL_REFERENCE], "False");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [&b""[..], b"\x00\x01", b"<MsgHead", b"<a><b></a>"] {
            assert!(extract(junk).is_err());
        }
    }
}
