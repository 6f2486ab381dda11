//! MsgHead v1.2 (`http://www.kith.no/xmlstds/msghead/2006-05-24`): the
//! envelope document of every business message.
//!
//! [`MsgHead::parse`] gives a read-only view of a received payload: message
//! info, sender and receiver HER-ids at level 1 (organisation) and level 2
//! (sub-organisation or healthcare professional), and the documents: the
//! business document (its namespace and its exact source text), base64
//! attachments and external file references. [`NewMsgHead`] writes one
//! around a business document, as the communication test and the demo need.

use chrono::{DateTime, SecondsFormat, Utc};
use roxmltree::Node;

use crate::error::{Error, Result};
use crate::herid::HerId;
use crate::xml::{self, attr, child, children, path_text, Code, Limits, XmlOut};

/// The MsgHead v1.2 namespace.
pub const NAMESPACE: &str = "http://www.kith.no/xmlstds/msghead/2006-05-24";
/// The base64 attachment container namespace.
pub const BASE64_CONTAINER_NAMESPACE: &str = "http://www.kith.no/xmlstds/base64container";
/// The code system of HER-id identifiers (`TypeId S`).
pub const HER_ID_SYSTEM: &str = "2.16.578.1.12.4.1.1.9051";
/// `MIGversion` of MsgHead v1.2.
pub const MIG_VERSION: &str = "v1.2 2006-05-24";
const DOC: &str = "MsgHead";

/// A level-2 party: who inside the organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubPartyKind {
    /// A sub-organisation or department (`Organisation/Organisation`).
    Organisation,
    /// A person (`Organisation/HealthcareProfessional`).
    HealthcareProfessional,
}

/// The level-2 party of a sender or receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubParty {
    /// Organisation or person.
    pub kind: SubPartyKind,
    /// `OrganisationName`, or the person's given and family name.
    pub name: Option<String>,
    /// Its HER-id, when it has one.
    pub her_id: Option<HerId>,
}

/// A sender or receiver: the organisation (level 1) and, optionally, who
/// inside it (level 2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Party {
    /// `OrganisationName`.
    pub name: Option<String>,
    /// The organisation's HER-id (the `Ident` whose `TypeId V` is `HER`).
    pub her_id: Option<HerId>,
    /// The level-2 party.
    pub sub: Option<SubParty>,
}

impl Party {
    /// The level-1 and level-2 HER-ids that are present.
    pub fn her_ids(&self) -> Vec<HerId> {
        self.her_id
            .into_iter()
            .chain(self.sub.as_ref().and_then(|s| s.her_id))
            .collect()
    }

    /// Whether `her_id` is this party at level 1 or 2.
    pub fn is(&self, her_id: HerId) -> bool {
        self.her_ids().contains(&her_id)
    }
}

/// What a `Document/RefDoc` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentContent {
    /// An XML document in `Content` (the business document, normally).
    Xml {
        /// Its root element's namespace.
        namespace: Option<String>,
        /// Its root element's local name (e.g. `Dialogmelding`).
        local_name: String,
        /// Its exact source text, never re-serialised.
        source: String,
    },
    /// A base64 attachment in `Content/Base64Container`.
    Base64 {
        /// The base64 text with whitespace removed.
        base64: String,
    },
    /// An attachment by external reference (`FileReference`).
    FileReference(String),
    /// Nothing usable.
    Empty,
}

/// One `Document` of a MsgHead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// `RefDoc/MsgType` (`XML` or `A` for attachment).
    pub msg_type: Option<Code>,
    /// `RefDoc/MimeType`.
    pub mime_type: Option<String>,
    /// `RefDoc/Description`.
    pub description: Option<String>,
    /// The content.
    pub content: DocumentContent,
}

/// A parsed MsgHead v1.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgHead {
    /// `MsgInfo/Type`: the message function in `V`.
    pub msg_type: Code,
    /// `MsgInfo/MIGversion`.
    pub mig_version: Option<String>,
    /// `MsgInfo/GenDate` as written.
    pub gen_date: Option<String>,
    /// `MsgInfo/MsgId`.
    pub msg_id: String,
    /// `MsgInfo/Ack/@V` (`J` asks for an AppRec).
    pub ack: Option<String>,
    /// `MsgInfo/ConversationRef/RefToParent`.
    pub ref_to_parent: Option<String>,
    /// `MsgInfo/ConversationRef/RefToConversation`.
    pub ref_to_conversation: Option<String>,
    /// `MsgInfo/Sender`.
    pub sender: Party,
    /// `MsgInfo/Receiver`.
    pub receiver: Party,
    /// Every HER-id anywhere in `MsgInfo/Sender` (organisation,
    /// sub-organisations, departments, people, at any depth).
    pub sender_her_ids: Vec<HerId>,
    /// Every HER-id anywhere in `MsgInfo/Receiver`.
    pub receiver_her_ids: Vec<HerId>,
    /// The documents, the business document first.
    pub documents: Vec<Document>,
}

impl MsgHead {
    /// Read a MsgHead payload within the default [`Limits`].
    pub fn parse(payload: &[u8]) -> Result<MsgHead> {
        Self::parse_with_limits(payload, &Limits::default())
    }

    /// Read a MsgHead payload within `limits`.
    pub fn parse_with_limits(payload: &[u8], limits: &Limits) -> Result<MsgHead> {
        let text = xml::as_text(payload, limits)?;
        let document = xml::parse_text(&text, limits)?;
        Self::from_root(document.root_element(), &text)
    }

    pub(crate) fn from_root(root: Node<'_, '_>, text: &str) -> Result<MsgHead> {
        if !xml::is(&root, NAMESPACE, "MsgHead") {
            return Err(Error::UnexpectedDocument {
                expected: "MsgHead v1.2",
                found: xml::expanded_name(root),
            });
        }
        let info = child(root, NAMESPACE, "MsgInfo").ok_or(missing("MsgInfo"))?;
        let msg_type =
            Code::read(child(info, NAMESPACE, "Type")).ok_or(missing("MsgInfo/Type/@V"))?;
        let msg_id = path_text(info, NAMESPACE, "MsgId").ok_or(missing("MsgInfo/MsgId"))?;
        let sender_node = child(info, NAMESPACE, "Sender");
        let receiver_node = child(info, NAMESPACE, "Receiver");
        let sender = read_party(sender_node, "MsgInfo/Sender")?;
        let receiver = read_party(receiver_node, "MsgInfo/Receiver")?;
        let sender_her_ids = all_her_ids(sender_node, "MsgInfo/Sender")?;
        let receiver_her_ids = all_her_ids(receiver_node, "MsgInfo/Receiver")?;
        let documents = children(root, NAMESPACE, "Document")
            .into_iter()
            .map(|d| read_document(d, text))
            .collect();
        Ok(MsgHead {
            msg_type,
            mig_version: path_text(info, NAMESPACE, "MIGversion"),
            gen_date: path_text(info, NAMESPACE, "GenDate"),
            msg_id,
            ack: attr(child(info, NAMESPACE, "Ack"), "V"),
            ref_to_parent: path_text(info, NAMESPACE, "ConversationRef/RefToParent"),
            ref_to_conversation: path_text(info, NAMESPACE, "ConversationRef/RefToConversation"),
            sender,
            receiver,
            sender_her_ids,
            receiver_her_ids,
            documents,
        })
    }

    /// The message function (`MsgInfo/Type/@V`).
    pub fn function(&self) -> &str {
        &self.msg_type.v
    }

    /// Whether the sender asks for an application receipt (`Ack V="J"`).
    pub fn wants_receipt(&self) -> bool {
        self.ack.as_deref() == Some("J")
    }

    /// The business document (first `Document`), when it is XML.
    pub fn business_document(&self) -> Option<&DocumentContent> {
        self.documents
            .first()
            .map(|d| &d.content)
            .filter(|c| matches!(c, DocumentContent::Xml { .. }))
    }

    /// The attachments: every document after the first.
    pub fn attachments(&self) -> &[Document] {
        self.documents.get(1..).unwrap_or_default()
    }

    /// Check the MsgHead's parties against the message header: the sender
    /// must be `from_her_id` and the receiver `to_her_id`, each at level 1
    /// or 2. A mismatch maps to `transport:invalid-field-value`.
    pub fn check_parties(&self, from_her_id: HerId, to_her_id: HerId) -> Result<()> {
        if !names(&self.sender_her_ids, from_her_id) {
            return Err(Error::SenderMismatch {
                header: from_her_id.get(),
                payload: join(&self.sender_her_ids),
            });
        }
        if !names(&self.receiver_her_ids, to_her_id) {
            return Err(Error::Mismatch {
                what: "MsgHead receiver HER-id",
                expected: to_her_id.to_string(),
                received: join(&self.receiver_her_ids),
            });
        }
        Ok(())
    }
}

/// Whether a party with these HER-ids (at any depth) may be `her_id`: it
/// names it, or it names no HER-id at all (organisation numbers only).
fn names(her_ids: &[HerId], her_id: HerId) -> bool {
    her_ids.is_empty() || her_ids.contains(&her_id)
}

fn join(her_ids: &[HerId]) -> String {
    her_ids
        .iter()
        .map(HerId::to_string)
        .collect::<Vec<_>>()
        .join("/")
}

/// Every HER-id `Ident` below `party` (any depth), in document order.
fn all_her_ids(party: Option<Node<'_, '_>>, path: &'static str) -> Result<Vec<HerId>> {
    let Some(party) = party else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for node in party.descendants().filter(|n| n.is_element()) {
        if let Some(her_id) = her_ident(node, path)? {
            if !found.contains(&her_id) {
                found.push(her_id);
            }
        }
    }
    Ok(found)
}

fn missing(path: &'static str) -> Error {
    Error::MissingElement {
        document: DOC,
        path,
    }
}

/// The HER-id among `node`'s `Ident` children (`TypeId V="HER"`).
fn her_ident(node: Node<'_, '_>, path: &'static str) -> Result<Option<HerId>> {
    let ident = children(node, NAMESPACE, "Ident")
        .into_iter()
        .find(|i| attr(child(*i, NAMESPACE, "TypeId"), "V").as_deref() == Some("HER"));
    let Some(ident) = ident else { return Ok(None) };
    let Some(id) = path_text(ident, NAMESPACE, "Id") else {
        return Ok(None);
    };
    HerId::parse_field(path, &id)
        .map(Some)
        .map_err(|_| Error::InvalidValue {
            document: DOC,
            path,
            reason: "HER-id is not a positive integer".into(),
        })
}

fn read_party(node: Option<Node<'_, '_>>, path: &'static str) -> Result<Party> {
    let node = node.ok_or(missing(path))?;
    let Some(organisation) = child(node, NAMESPACE, "Organisation") else {
        return Ok(Party::default());
    };
    let sub_organisation = child(organisation, NAMESPACE, "Organisation").map(|o| {
        her_ident(o, path).map(|her_id| SubParty {
            kind: SubPartyKind::Organisation,
            name: path_text(o, NAMESPACE, "OrganisationName"),
            her_id,
        })
    });
    let professional = child(organisation, NAMESPACE, "HealthcareProfessional").map(|p| {
        her_ident(p, path).map(|her_id| SubParty {
            kind: SubPartyKind::HealthcareProfessional,
            name: person_name(p),
            her_id,
        })
    });
    let candidates: Vec<SubParty> = sub_organisation
        .into_iter()
        .chain(professional)
        .collect::<Result<_>>()?;
    // As the reference library does: the first level-2 party with a HER-id.
    let sub = candidates
        .iter()
        .find(|s| s.her_id.is_some())
        .or(candidates.first())
        .cloned();
    Ok(Party {
        name: path_text(organisation, NAMESPACE, "OrganisationName"),
        her_id: her_ident(organisation, path)?,
        sub,
    })
}

fn person_name(person: Node<'_, '_>) -> Option<String> {
    let parts: Vec<String> = ["GivenName", "MiddleName", "FamilyName"]
        .iter()
        .filter_map(|n| path_text(person, NAMESPACE, n))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn read_document(document: Node<'_, '_>, text: &str) -> Document {
    let ref_doc = child(document, NAMESPACE, "RefDoc");
    let content = ref_doc.map_or(DocumentContent::Empty, |r| read_content(r, text));
    Document {
        msg_type: ref_doc.and_then(|r| Code::read(child(r, NAMESPACE, "MsgType"))),
        mime_type: ref_doc.and_then(|r| path_text(r, NAMESPACE, "MimeType")),
        description: ref_doc.and_then(|r| path_text(r, NAMESPACE, "Description")),
        content,
    }
}

fn read_content(ref_doc: Node<'_, '_>, text: &str) -> DocumentContent {
    if let Some(reference) = path_text(ref_doc, NAMESPACE, "FileReference") {
        return DocumentContent::FileReference(reference);
    }
    let Some(inner) = child(ref_doc, NAMESPACE, "Content").and_then(|c| c.first_element_child())
    else {
        return DocumentContent::Empty;
    };
    if xml::is(&inner, BASE64_CONTAINER_NAMESPACE, "Base64Container") {
        let base64 = xml::text_of(Some(inner))
            .unwrap_or_default()
            .split_ascii_whitespace()
            .collect();
        return DocumentContent::Base64 { base64 };
    }
    DocumentContent::Xml {
        namespace: inner.tag_name().namespace().map(str::to_string),
        local_name: inner.tag_name().name().to_string(),
        source: text.get(inner.range()).unwrap_or_default().to_string(),
    }
}

/// A MsgHead to write around a business document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMsgHead {
    /// `MsgInfo/Type` (the message function).
    pub msg_type: Code,
    /// `MsgInfo/MsgId`.
    pub msg_id: String,
    /// `MsgInfo/GenDate`.
    pub gen_date: DateTime<Utc>,
    /// Whether to ask for an AppRec (`Ack V="J"`).
    pub ack: bool,
    /// `ConversationRef/RefToParent`.
    pub ref_to_parent: Option<String>,
    /// `ConversationRef/RefToConversation`.
    pub ref_to_conversation: Option<String>,
    /// The sender.
    pub sender: Party,
    /// The receiver.
    pub receiver: Party,
    /// `Document/ContentDescription`.
    pub content_description: Option<String>,
}

impl NewMsgHead {
    /// The MsgHead XML around a business document given as XML text (any
    /// namespace, e.g. an IPLOS report). The document must be well-formed;
    /// a leading BOM or XML declaration is dropped. Its text is inserted as
    /// given (not re-indented).
    pub fn to_xml(&self, business_document: &str) -> Result<String> {
        let document = business_document
            .trim_start_matches('\u{feff}')
            .trim_start();
        let document = match document.strip_prefix("<?xml") {
            Some(rest) => rest
                .split_once("?>")
                .map_or("", |(_, body)| body)
                .trim_start(),
            None => document,
        };
        xml::parse_text(document, &Limits::default())?;
        Ok(self.write(|out| out.raw(document.trim_end())))
    }

    /// The MsgHead XML with `body` written into the first document's
    /// `Content` by the callback (so that it is indented with the rest).
    pub(crate) fn write(&self, body: impl FnOnce(&mut XmlOut)) -> String {
        let mut out = XmlOut::new();
        out.start("MsgHead", &[("xmlns", NAMESPACE)]);
        out.start("MsgInfo", &[]);
        out.code("Type", &self.msg_type);
        out.text_element("MIGversion", MIG_VERSION);
        out.text_element(
            "GenDate",
            &self.gen_date.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        out.text_element("MsgId", &self.msg_id);
        let ack = if self.ack {
            Code::new("J", "Ja")
        } else {
            Code::new("N", "Nei")
        };
        out.code("Ack", &ack);
        if self.ref_to_parent.is_some() || self.ref_to_conversation.is_some() {
            out.start("ConversationRef", &[]);
            out.text_element(
                "RefToParent",
                self.ref_to_parent.as_deref().unwrap_or_default(),
            );
            out.text_element(
                "RefToConversation",
                self.ref_to_conversation.as_deref().unwrap_or_default(),
            );
            out.end("ConversationRef");
        }
        write_party(&mut out, "Sender", &self.sender);
        write_party(&mut out, "Receiver", &self.receiver);
        out.end("MsgInfo");
        out.start("Document", &[]);
        if let Some(description) = &self.content_description {
            out.text_element("ContentDescription", description);
        }
        out.start("RefDoc", &[]);
        out.empty(
            "IssueDate",
            &[(
                "V",
                &self.gen_date.to_rfc3339_opts(SecondsFormat::Secs, true),
            )],
        );
        out.code("MsgType", &Code::new("XML", "XML-instans"));
        out.start("Content", &[]);
        body(&mut out);
        out.end("Content");
        out.end("RefDoc");
        out.end("Document");
        out.end("MsgHead");
        out.finish()
    }
}

fn write_ident(out: &mut XmlOut, her_id: HerId) {
    out.start("Ident", &[]);
    out.text_element("Id", &her_id.to_string());
    out.code(
        "TypeId",
        &Code::new("HER", "HER-id").with_system(HER_ID_SYSTEM),
    );
    out.end("Ident");
}

fn write_party(out: &mut XmlOut, element: &str, party: &Party) {
    out.start(element, &[]);
    out.start("Organisation", &[]);
    out.text_element(
        "OrganisationName",
        party.name.as_deref().unwrap_or_default(),
    );
    if let Some(her_id) = party.her_id {
        write_ident(out, her_id);
    }
    if let Some(sub) = &party.sub {
        match sub.kind {
            SubPartyKind::Organisation => {
                out.start("Organisation", &[]);
                out.text_element("OrganisationName", sub.name.as_deref().unwrap_or_default());
            }
            SubPartyKind::HealthcareProfessional => {
                out.start("HealthcareProfessional", &[]);
                out.text_element("FamilyName", sub.name.as_deref().unwrap_or_default());
            }
        }
        if let Some(her_id) = sub.her_id {
            write_ident(out, her_id);
        }
        out.end(match sub.kind {
            SubPartyKind::Organisation => "Organisation",
            SubPartyKind::HealthcareProfessional => "HealthcareProfessional",
        });
    }
    out.end("Organisation");
    out.end(element);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_report::ErrorCondition;
    use helsemelding_testkit::fixtures::read_nhn;

    fn her(n: u32) -> HerId {
        HerId::new(n).unwrap()
    }

    fn fixture(name: &str) -> MsgHead {
        MsgHead::parse(&read_nhn(&format!("messages/{name}"))).unwrap()
    }

    #[test]
    fn communication_test_request() {
        let m = fixture("Dialogtjeneste12_Kommunikasjonstest_Request.xml");
        assert_eq!(m.function(), "DIALOG_INNBYGGER_TEST");
        assert_eq!(
            m.msg_type.dn.as_deref(),
            Some("Dialog med innbygger - test")
        );
        assert_eq!(m.mig_version.as_deref(), Some("v1.2 2006-05-24"));
        assert_eq!(m.gen_date.as_deref(), Some("2015-05-04T09:31:47.0Z"));
        assert_eq!(m.msg_id, "8325fcc2-89a9-11e3-baa8-0800200c9a66");
        assert!(!m.wants_receipt());
        assert_eq!(m.sender.name.as_deref(), Some("Nanset legekontor"));
        assert_eq!(m.sender.her_id, Some(her(987654)));
        let sub = m.sender.sub.as_ref().unwrap();
        assert_eq!(sub.kind, SubPartyKind::HealthcareProfessional);
        assert_eq!(sub.her_id, Some(her(93238)));
        assert_eq!(sub.name.as_deref(), Some("August September"));
        assert_eq!(m.receiver.her_id, Some(her(2359)));
        assert_eq!(m.receiver.sub.as_ref().unwrap().her_id, Some(her(93246)));
        assert_eq!(m.documents.len(), 1);
        match m.business_document().unwrap() {
            DocumentContent::Xml {
                namespace,
                local_name,
                source,
            } => {
                assert_eq!(
                    namespace.as_deref(),
                    Some("http://www.kith.no/xmlstds/dialog/2013-01-23")
                );
                assert_eq!(local_name, "Dialogmelding");
                assert!(source.starts_with("<Dialogmelding xmlns="), "{source}");
                assert!(source.ends_with("</Dialogmelding>"));
                assert!(source.contains(r#"<TypeForesp V="KT" DN="Kommunikasjonstest""#));
            }
            other => panic!("{other:?}"),
        }
        m.check_parties(her(93238), her(93246)).unwrap();
        m.check_parties(her(987654), her(2359)).unwrap();
    }

    #[test]
    fn ekontakt_with_sub_organisations() {
        let m = fixture("DIALOG_INNBYGGER_EKONTAKT.xml");
        assert_eq!(m.function(), "DIALOG_INNBYGGER_EKONTAKT");
        assert_eq!(m.msg_id, "0d77d041-f010-4ec8-9105-f3dda92fc320");
        assert!(m.wants_receipt());
        assert_eq!(m.sender.her_id, Some(her(115851)));
        let sender_sub = m.sender.sub.as_ref().unwrap();
        assert_eq!(sender_sub.kind, SubPartyKind::Organisation);
        assert_eq!(
            sender_sub.name.as_deref(),
            Some("Kenneths kommunikasjonspart 4")
        );
        assert_eq!(sender_sub.her_id, Some(her(8141333)));
        assert_eq!(m.receiver.sub.as_ref().unwrap().her_id, Some(her(8093244)));
        assert_eq!(m.attachments().len(), 0);
    }

    #[test]
    fn reseptfornyelse_with_extra_documents() {
        let m = fixture("DIALOG_INNBYGGER_RESEPTFORNYELSE.xml");
        assert_eq!(m.function(), "DIALOG_INNBYGGER_RESEPTFORNYELSE");
        assert_eq!(m.gen_date.as_deref(), Some("2022-10-22T14:20:00+02:00"));
        assert_eq!(m.documents.len(), 3);
        for attachment in m.attachments() {
            match &attachment.content {
                DocumentContent::Xml {
                    namespace,
                    local_name,
                    ..
                } => {
                    assert_eq!(local_name, "Resept");
                    assert_eq!(
                        namespace.as_deref(),
                        Some("http://www.kith.no/xmlstds/eresept/m1/2010-05-01")
                    );
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(attachment.msg_type.as_ref().unwrap().v, "XML");
        }
    }

    #[test]
    fn helsenorge_message_with_bom_and_mixed_idents() {
        let m = fixture("Helsenorge_Message.xml");
        assert_eq!(m.msg_id, "8325fcba-89a9-11e3-baa8-0800200c9a66");
        // The sender organisation is identified by ENH only; the HER-id is level 2.
        assert_eq!(m.sender.her_id, None);
        assert_eq!(m.sender.sub.as_ref().unwrap().her_id, Some(her(109989)));
        assert_eq!(m.receiver.her_id, Some(her(109989)));
        assert_eq!(m.receiver.sub.as_ref().unwrap().her_id, Some(her(91095)));
        let err = m.check_parties(her(93238), her(91095)).unwrap_err();
        assert_eq!(
            err,
            Error::SenderMismatch {
                header: 93238,
                payload: "109989".into()
            }
        );
        assert_eq!(err.condition(), Some(ErrorCondition::SpoofingAttack));
        assert_eq!(err.condition_data(), ["93238", "109989"]);
        assert!(m.check_parties(her(109989), her(1234)).is_err());
    }

    fn deep_msghead(sender_person: u32) -> String {
        let ident = |id: u32| {
            format!(r#"<Ident><Id>{id}</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051"/></Ident>"#)
        };
        format!(
            r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><MsgInfo>
<Type V="DIALOG_NOTAT"/><MsgId>m-1</MsgId>
<Sender><Organisation><OrganisationName>Kommune</OrganisationName>
<Ident><Id>974123456</Id><TypeId V="ENH"/></Ident>
<Organisation><OrganisationName>Helse</OrganisationName>{}
<Organisation><OrganisationName>Hjemmetjeneste</OrganisationName>
<HealthcareProfessional><FamilyName>Lege</FamilyName>{}</HealthcareProfessional>
</Organisation></Organisation></Organisation></Sender>
<Receiver><Organisation><OrganisationName>NHN</OrganisationName>{}</Organisation></Receiver>
</MsgInfo></MsgHead>"#,
            ident(8141703),
            ident(sender_person),
            ident(109989)
        )
    }

    #[test]
    fn parties_are_matched_at_any_depth() {
        let m = MsgHead::parse(deep_msghead(8141705).as_bytes()).unwrap();
        assert_eq!(m.sender_her_ids, [her(8141703), her(8141705)]);
        m.check_parties(her(8141705), her(109989)).unwrap();
        m.check_parties(her(8141703), her(109989)).unwrap();
        let spoofed = m.check_parties(her(666), her(109989)).unwrap_err();
        assert_eq!(spoofed.condition(), Some(ErrorCondition::SpoofingAttack));
        assert_eq!(spoofed.condition_data(), ["666", "8141703/8141705"]);
        let wrong_receiver = m.check_parties(her(8141705), her(4210)).unwrap_err();
        assert_eq!(
            wrong_receiver.condition(),
            Some(ErrorCondition::InvalidFieldValue)
        );
    }

    #[test]
    fn a_party_without_her_ids_passes() {
        let text = deep_msghead(1).replace("HER", "ENH");
        let m = MsgHead::parse(text.as_bytes()).unwrap();
        assert!(m.sender_her_ids.is_empty());
        m.check_parties(her(8141705), her(4210)).unwrap();
    }

    #[test]
    fn metadata_fixture_attachments() {
        let m = fixture("MetadataTestsDialogmelding11.xml");
        assert_eq!(
            m.ref_to_parent.as_deref(),
            Some("d14ea2f3-d796-4d7b-8271-a4480d2b4035")
        );
        assert_eq!(
            m.ref_to_conversation.as_deref(),
            Some("a14ea2f3-d796-4d7b-8271-a4480d2b4037")
        );
        assert_eq!(
            m.sender.her_id,
            Some(her(56704)),
            "the HER ident, not the HPR one"
        );
        assert_eq!(m.documents.len(), 4);
        let a = m.attachments();
        assert_eq!(
            a[0].content,
            DocumentContent::Base64 {
                base64: "TG90c2FuZExvdHNPZkF0dGFjaG1lbnRUZXh0w4bDmMOF".into()
            }
        );
        assert_eq!(a[0].mime_type.as_deref(), Some("application/pdf"));
        assert_eq!(a[0].description.as_deref(), Some("EKG-2017-06-12"));
        assert_eq!(
            a[1].content,
            DocumentContent::FileReference("https://someurl.com/myfile.pdf".into())
        );
        match &a[2].content {
            DocumentContent::Base64 { base64 } => assert_eq!(base64.len(), 140),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn writes_around_any_business_document() {
        let head = NewMsgHead {
            msg_type: Code::new("IPLOS_STAT", "IPLOS statistikk"),
            msg_id: "m-1".into(),
            gen_date: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            ack: true,
            ref_to_parent: None,
            ref_to_conversation: None,
            sender: Party {
                name: Some("Kommune".into()),
                her_id: Some(her(91462)),
                sub: None,
            },
            receiver: Party {
                name: Some("Helsedirektoratet".into()),
                her_id: Some(her(2359)),
                sub: None,
            },
            content_description: None,
        };
        let xml = head
            .to_xml("\u{feff}<?xml version=\"1.0\"?>\n<Iplos xmlns=\"urn:iplos\"><Antall>3</Antall></Iplos>\n")
            .unwrap();
        assert!(!xml.contains("<?xml"));
        let m = MsgHead::parse(xml.as_bytes()).unwrap();
        assert!(m.wants_receipt());
        assert_eq!(m.function(), "IPLOS_STAT");
        m.check_parties(her(91462), her(2359)).unwrap();
        assert_eq!(
            m.business_document(),
            Some(&DocumentContent::Xml {
                namespace: Some("urn:iplos".into()),
                local_name: "Iplos".into(),
                source: "<Iplos xmlns=\"urn:iplos\"><Antall>3</Antall></Iplos>".into()
            })
        );
        assert!(head.to_xml("<broken>").is_err());
    }

    #[test]
    fn other_documents_are_refused() {
        for name in [
            "SampleMessage.xml",
            "SoapFault.xml",
            "MetadataTests_Apprec10.xml",
        ] {
            let err = MsgHead::parse(&read_nhn(&format!("messages/{name}"))).unwrap_err();
            assert!(
                matches!(err, Error::UnexpectedDocument { .. }),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn missing_parts() {
        let no_id = format!(
            r#"<MsgHead xmlns="{NAMESPACE}"><MsgInfo><Type V="X"/><Sender/><Receiver/></MsgInfo></MsgHead>"#
        );
        assert_eq!(
            MsgHead::parse(no_id.as_bytes()).unwrap_err(),
            Error::MissingElement {
                document: "MsgHead",
                path: "MsgInfo/MsgId"
            }
        );
        let bad_her = format!(
            r#"<MsgHead xmlns="{NAMESPACE}"><MsgInfo><Type V="X"/><MsgId>1</MsgId><Sender><Organisation><Ident><Id>abc</Id><TypeId V="HER"/></Ident></Organisation></Sender><Receiver/></MsgInfo></MsgHead>"#
        );
        assert!(matches!(
            MsgHead::parse(bad_her.as_bytes()).unwrap_err(),
            Error::InvalidValue { .. }
        ));
    }
}
