//! AppRec, the application receipt: 1.0 (`http://www.kith.no/xmlstds/apprec/2004-11-21`)
//! and 1.1 (`http://www.kith.no/xmlstds/apprec/2012-02-15`).
//!
//! Both versions have the same shape for what the flows need: message type,
//! id, generation date, sender and receiver (institution HER-id and a
//! department or person below it), status (1 OK, 2 rejected, 3 OK with
//! errors in parts), error codes and the id of the message answered.

use chrono::{DateTime, SecondsFormat, Utc};
use roxmltree::Node;

use crate::error::{Error, Result};
use crate::herid::HerId;
use crate::msghead::{self, MsgHead};
use crate::xml::{self, attr, child, children, path_text, Code, Limits, XmlOut};

/// AppRec 1.0 namespace.
pub const NAMESPACE_1_0: &str = "http://www.kith.no/xmlstds/apprec/2004-11-21";
/// AppRec 1.1 namespace.
pub const NAMESPACE_1_1: &str = "http://www.kith.no/xmlstds/apprec/2012-02-15";
/// The message type of an AppRec (`MsgType V`).
pub const MSG_TYPE: &str = "APPREC";
/// Code system of `Status` (kodeverk 8221).
pub const STATUS_SYSTEM: &str = "2.16.578.1.12.4.1.1.8221";
/// Code system of `Error` codes for general message errors (kodeverk 8222).
pub const ERROR_SYSTEM: &str = "2.16.578.1.12.4.1.1.8222";
const DOC: &str = "AppRec";

/// The AppRec version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// AppRec 1.0 (2004-11-21).
    V1_0,
    /// AppRec 1.1 (2012-02-15).
    V1_1,
}

impl Version {
    /// The version's namespace.
    pub const fn namespace(self) -> &'static str {
        match self {
            Version::V1_0 => NAMESPACE_1_0,
            Version::V1_1 => NAMESPACE_1_1,
        }
    }

    /// The `MIGversion` text the version's examples carry.
    pub const fn mig_version(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0 2004-11-21",
            Version::V1_1 => "v1.1 2012-02-15",
        }
    }

    /// The version whose namespace is `namespace`.
    pub fn from_namespace(namespace: &str) -> Option<Version> {
        match namespace {
            NAMESPACE_1_0 => Some(Version::V1_0),
            NAMESPACE_1_1 => Some(Version::V1_1),
            _ => None,
        }
    }
}

/// `Status V`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 1: OK.
    Ok,
    /// 2: rejected.
    Rejected,
    /// 3: OK, errors in parts of the message.
    OkWithErrors,
}

impl Status {
    /// The code (`1`, `2`, `3`).
    pub const fn code(self) -> &'static str {
        match self {
            Status::Ok => "1",
            Status::Rejected => "2",
            Status::OkWithErrors => "3",
        }
    }

    /// The display name.
    pub const fn display_name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Rejected => "Avvist",
            Status::OkWithErrors => "OK, feil i delmelding",
        }
    }

    /// The status of a code.
    pub fn from_code(code: &str) -> Option<Status> {
        match code.trim() {
            "1" => Some(Status::Ok),
            "2" => Some(Status::Rejected),
            "3" => Some(Status::OkWithErrors),
            _ => None,
        }
    }
}

/// The level below the institution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// `Inst/Dept`.
    Department,
    /// `Inst/HCPerson`.
    Person,
}

/// A department or person below the institution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sub {
    /// Department or person.
    pub kind: SubKind,
    /// `Name`.
    pub name: Option<String>,
    /// Its HER-id, when its `TypeId V` is `HER`.
    pub her_id: Option<HerId>,
}

/// An AppRec sender or receiver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Party {
    /// `Role`.
    pub role: Option<Code>,
    /// `HCP/Inst/Name`.
    pub name: Option<String>,
    /// `HCP/Inst/Id` when its `TypeId V` is `HER`.
    pub her_id: Option<HerId>,
    /// The department or person.
    pub sub: Option<Sub>,
}

impl Party {
    /// The same party as a MsgHead names it.
    pub fn from_msghead(party: &msghead::Party) -> Party {
        Party {
            role: None,
            name: party.name.clone(),
            her_id: party.her_id,
            sub: party.sub.as_ref().map(|sub| Sub {
                kind: match sub.kind {
                    msghead::SubPartyKind::Organisation => SubKind::Department,
                    msghead::SubPartyKind::HealthcareProfessional => SubKind::Person,
                },
                name: sub.name.clone(),
                her_id: sub.her_id,
            }),
        }
    }

    /// Whether `her_id` is this party at either level.
    pub fn is(&self, her_id: HerId) -> bool {
        self.her_id == Some(her_id) || self.sub.as_ref().and_then(|s| s.her_id) == Some(her_id)
    }
}

/// `OriginalMsgId`: the message the AppRec answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalMsgId {
    /// Its message type (the message function in `V`).
    pub msg_type: Code,
    /// Its issue date as written.
    pub issue_date: String,
    /// Its `MsgId`.
    pub id: String,
}

/// An AppRec of either version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRec {
    /// The version (namespace).
    pub version: Version,
    /// `MsgType` (`APPREC`).
    pub msg_type: Code,
    /// `MIGversion`.
    pub mig_version: Option<String>,
    /// `GenDate` as written.
    pub gen_date: String,
    /// `Id`.
    pub id: String,
    /// `Sender`.
    pub sender: Party,
    /// `Receiver`.
    pub receiver: Party,
    /// `Status`.
    pub status: Status,
    /// `Error` elements (`V` code, `DN` text, `S` system).
    pub errors: Vec<Code>,
    /// `OriginalMsgId`.
    pub original: OriginalMsgId,
}

fn missing(path: &'static str) -> Error {
    Error::MissingElement {
        document: DOC,
        path,
    }
}

impl AppRec {
    /// Read an AppRec of either version within the default [`Limits`].
    pub fn parse(payload: &[u8]) -> Result<AppRec> {
        Self::parse_with_limits(payload, &Limits::default())
    }

    /// Read an AppRec within `limits`.
    pub fn parse_with_limits(payload: &[u8], limits: &Limits) -> Result<AppRec> {
        let text = xml::as_text(payload, limits)?;
        let document = xml::parse_text(&text, limits)?;
        Self::from_root(document.root_element())
    }

    pub(crate) fn from_root(root: Node<'_, '_>) -> Result<AppRec> {
        let version = root
            .tag_name()
            .namespace()
            .and_then(Version::from_namespace)
            .filter(|_| root.tag_name().name() == "AppRec")
            .ok_or_else(|| Error::UnexpectedDocument {
                expected: "AppRec 1.0 or 1.1",
                found: xml::expanded_name(root),
            })?;
        let ns = version.namespace();
        let status_code = attr(child(root, ns, "Status"), "V").ok_or(missing("Status/@V"))?;
        let status = Status::from_code(&status_code).ok_or_else(|| Error::InvalidValue {
            document: DOC,
            path: "Status/@V",
            reason: "not 1, 2 or 3".into(),
        })?;
        let original = child(root, ns, "OriginalMsgId").ok_or(missing("OriginalMsgId"))?;
        Ok(AppRec {
            version,
            msg_type: Code::read(child(root, ns, "MsgType")).ok_or(missing("MsgType/@V"))?,
            mig_version: path_text(root, ns, "MIGversion"),
            gen_date: path_text(root, ns, "GenDate").ok_or(missing("GenDate"))?,
            id: path_text(root, ns, "Id").ok_or(missing("Id"))?,
            sender: read_party(child(root, ns, "Sender"), ns, "Sender")?,
            receiver: read_party(child(root, ns, "Receiver"), ns, "Receiver")?,
            status,
            errors: children(root, ns, "Error")
                .into_iter()
                .filter_map(|e| Code::read(Some(e)))
                .collect(),
            original: OriginalMsgId {
                msg_type: Code::read(child(original, ns, "MsgType"))
                    .ok_or(missing("OriginalMsgId/MsgType/@V"))?,
                issue_date: path_text(original, ns, "IssueDate")
                    .ok_or(missing("OriginalMsgId/IssueDate"))?,
                id: path_text(original, ns, "Id").ok_or(missing("OriginalMsgId/Id"))?,
            },
        })
    }

    /// A new AppRec answering a received MsgHead: its sender is the
    /// original's receiver, its receiver the original's sender, and
    /// `OriginalMsgId` names the message answered.
    pub fn answering(
        original: &MsgHead,
        version: Version,
        id: impl Into<String>,
        gen_date: DateTime<Utc>,
        status: Status,
        errors: Vec<Code>,
    ) -> AppRec {
        AppRec {
            version,
            msg_type: Code::new(MSG_TYPE, "Applikasjonskvittering"),
            mig_version: Some(version.mig_version().to_string()),
            gen_date: gen_date.to_rfc3339_opts(SecondsFormat::Secs, true),
            id: id.into(),
            sender: Party::from_msghead(&original.receiver),
            receiver: Party::from_msghead(&original.sender),
            status,
            errors,
            original: OriginalMsgId {
                msg_type: original.msg_type.clone(),
                issue_date: original.gen_date.clone().unwrap_or_default(),
                id: original.msg_id.clone(),
            },
        }
    }

    /// The AppRec as XML: UTF-8, no declaration, indented.
    pub fn to_xml(&self) -> String {
        let mut out = XmlOut::new();
        out.start("AppRec", &[("xmlns", self.version.namespace())]);
        out.code("MsgType", &self.msg_type);
        out.text_element(
            "MIGversion",
            self.mig_version
                .as_deref()
                .unwrap_or(self.version.mig_version()),
        );
        out.text_element("GenDate", &self.gen_date);
        out.text_element("Id", &self.id);
        write_party(&mut out, "Sender", &self.sender);
        write_party(&mut out, "Receiver", &self.receiver);
        let status =
            Code::new(self.status.code(), self.status.display_name()).with_system(STATUS_SYSTEM);
        out.code("Status", &status);
        for error in &self.errors {
            out.code("Error", error);
        }
        out.start("OriginalMsgId", &[]);
        out.code("MsgType", &self.original.msg_type);
        out.text_element("IssueDate", &self.original.issue_date);
        out.text_element("Id", &self.original.id);
        out.end("OriginalMsgId");
        out.end("AppRec");
        out.finish()
    }
}

/// `Id` + `TypeId` where `TypeId V` is `HER`: the HER-id.
fn her_id_of(node: Node<'_, '_>, ns: &str, path: &'static str) -> Result<Option<HerId>> {
    if attr(child(node, ns, "TypeId"), "V").as_deref() != Some("HER") {
        return Ok(None);
    }
    let Some(id) = path_text(node, ns, "Id") else {
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

fn read_party(node: Option<Node<'_, '_>>, ns: &str, path: &'static str) -> Result<Party> {
    let node = node.ok_or(missing(path))?;
    let role = Code::read(child(node, ns, "Role"));
    let Some(inst) = xml::path(node, ns, "HCP/Inst") else {
        return Ok(Party {
            role,
            ..Party::default()
        });
    };
    let subs = children(inst, ns, "Dept")
        .into_iter()
        .map(|d| (SubKind::Department, d))
        .chain(
            children(inst, ns, "HCPerson")
                .into_iter()
                .map(|p| (SubKind::Person, p)),
        )
        .map(|(kind, n)| {
            Ok(Sub {
                kind,
                name: path_text(n, ns, "Name"),
                her_id: her_id_of(n, ns, path)?,
            })
        })
        .collect::<Result<Vec<Sub>>>()?;
    let sub = subs
        .iter()
        .find(|s| s.her_id.is_some())
        .or(subs.first())
        .cloned();
    Ok(Party {
        role,
        name: path_text(inst, ns, "Name"),
        her_id: her_id_of(inst, ns, path)?,
        sub,
    })
}

fn write_her(out: &mut XmlOut, name: Option<&str>, her_id: Option<HerId>) {
    out.text_element("Name", name.unwrap_or_default());
    if let Some(her_id) = her_id {
        out.text_element("Id", &her_id.to_string());
        out.code("TypeId", &Code::new("HER", "HER-id"));
    }
}

fn write_party(out: &mut XmlOut, element: &str, party: &Party) {
    out.start(element, &[]);
    if let Some(role) = &party.role {
        out.code("Role", role);
    }
    out.start("HCP", &[]);
    out.start("Inst", &[]);
    write_her(out, party.name.as_deref(), party.her_id);
    if let Some(sub) = &party.sub {
        let element = match sub.kind {
            SubKind::Department => "Dept",
            SubKind::Person => "HCPerson",
        };
        out.start(element, &[]);
        write_her(out, sub.name.as_deref(), sub.her_id);
        out.end(element);
    }
    out.end("Inst");
    out.end("HCP");
    out.end(element);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use helsemelding_testkit::fixtures::read_nhn;

    fn her(n: u32) -> HerId {
        HerId::new(n).unwrap()
    }

    #[test]
    fn reads_apprec_1_0_fixture() {
        let a = AppRec::parse(&read_nhn("messages/MetadataTests_Apprec10.xml")).unwrap();
        assert_eq!(a.version, Version::V1_0);
        assert_eq!(a.msg_type.v, "APPREC");
        assert_eq!(a.mig_version.as_deref(), Some("1.0 2004-11-21"));
        assert_eq!(a.gen_date, "2020-09-16T12:52:17.0009763Z");
        assert_eq!(a.id, "A76D8934-D4BA-4A22-8F5D-5DF5E3FC5756");
        assert_eq!(a.sender.role.as_ref().unwrap().v, "REQ");
        assert_eq!(a.sender.name.as_deref(), Some("ST OLAVS HOSPITAL HF"));
        assert_eq!(a.sender.her_id, Some(her(59)));
        let dept = a.sender.sub.as_ref().unwrap();
        assert_eq!(
            (dept.kind, dept.her_id),
            (SubKind::Department, Some(her(90998)))
        );
        assert_eq!(dept.name.as_deref(), Some("Ortopedisk kirurgi"));
        assert_eq!(a.receiver.her_id, Some(her(56704)));
        assert_eq!(a.receiver.sub.as_ref().unwrap().her_id, Some(her(258521)));
        assert_eq!(a.status, Status::Ok);
        assert!(a.errors.is_empty());
        assert_eq!(a.original.msg_type.v, "DIALOG_HELSEFAGLIG");
        assert_eq!(a.original.issue_date, "2017-06-12T09:35:22");
        assert_eq!(a.original.id, "de1a95c0-4d0c-11e7-9598-0800200c9a66");
    }

    #[test]
    fn reads_apprec_1_1_fixture() {
        let a = AppRec::parse(&read_nhn("messages/MetadataTests_Apprec11.xml")).unwrap();
        assert_eq!(a.version, Version::V1_1);
        assert_eq!(a.id, "C829A5F9-5BBF-4376-A37F-ADE4B399916C");
        assert_eq!(a.sender.name.as_deref(), Some(">Kattskinnet legesenter"));
        assert_eq!(a.sender.her_id, Some(her(56704)));
        let person = a.sender.sub.as_ref().unwrap();
        assert_eq!(
            (person.kind, person.her_id),
            (SubKind::Person, Some(her(258521)))
        );
        assert_eq!(a.receiver.role.as_ref().unwrap().v, "AVS");
        assert_eq!(a.receiver.her_id, Some(her(59)));
        assert_eq!(a.receiver.sub.as_ref().unwrap().her_id, Some(her(90998)));
        assert!(a.receiver.is(her(90998)) && a.receiver.is(her(59)) && !a.receiver.is(her(56704)));
        assert_eq!(a.original.id, "de1a95c0-4d0c-11e7-9598-0800200c9a66");
    }

    fn sample(version: Version, status: Status, errors: Vec<Code>) -> AppRec {
        AppRec {
            version,
            msg_type: Code::new(MSG_TYPE, "Applikasjonskvittering"),
            mig_version: Some(version.mig_version().into()),
            gen_date: "2026-11-23T14:00:00Z".into(),
            id: "7b0d5f58-5d0e-4a43-a3c2-2a3a0d3c4e5f".into(),
            sender: Party {
                role: None,
                name: Some("Helsedirektoratet & co".into()),
                her_id: Some(her(2359)),
                sub: Some(Sub {
                    kind: SubKind::Department,
                    name: Some("Statistikk".into()),
                    her_id: Some(her(93246)),
                }),
            },
            receiver: Party {
                role: None,
                name: Some("Kommune".into()),
                her_id: Some(her(91462)),
                sub: Some(Sub {
                    kind: SubKind::Person,
                    name: Some("Rita Lin".into()),
                    her_id: Some(her(258521)),
                }),
            },
            status,
            errors,
            original: OriginalMsgId {
                msg_type: Code::new("DIALOG_INNBYGGER_TEST", "Test"),
                issue_date: "2026-11-23T13:59:00Z".into(),
                id: "8325fcc2-89a9-11e3-baa8-0800200c9a66".into(),
            },
        }
    }

    #[test]
    fn answering_a_msghead_swaps_parties() {
        let original = MsgHead::parse(&read_nhn("messages/DIALOG_INNBYGGER_EKONTAKT.xml")).unwrap();
        let when = Utc.with_ymd_and_hms(2026, 11, 23, 14, 0, 0).unwrap();
        let a = AppRec::answering(&original, Version::V1_1, "id-1", when, Status::Ok, vec![]);
        assert_eq!(a.gen_date, "2026-11-23T14:00:00Z");
        assert_eq!(a.sender.sub.as_ref().unwrap().her_id, Some(her(8093244)));
        assert_eq!(a.receiver.sub.as_ref().unwrap().her_id, Some(her(8141333)));
        assert_eq!(a.receiver.sub.as_ref().unwrap().kind, SubKind::Department);
        assert_eq!(a.original.id, "0d77d041-f010-4ec8-9105-f3dda92fc320");
        assert_eq!(a.original.msg_type.v, "DIALOG_INNBYGGER_EKONTAKT");
        assert_eq!(a.original.issue_date, "2022-10-22T14:15:00.0Z");
        assert_eq!(AppRec::parse(a.to_xml().as_bytes()).unwrap(), a);
    }

    #[test]
    fn write_then_read_both_versions() {
        for version in [Version::V1_0, Version::V1_1] {
            for (status, errors) in [
                (Status::Ok, vec![]),
                (
                    Status::Rejected,
                    vec![
                        Code::new("E10", "Ugyldig meldingsidentifikator").with_system(ERROR_SYSTEM)
                    ],
                ),
                (
                    Status::OkWithErrors,
                    vec![Code::new("E20", "a"), Code::new("E35", "b")],
                ),
            ] {
                let written = sample(version, status, errors);
                let xml = written.to_xml();
                assert!(xml.starts_with(&format!(
                    "<AppRec xmlns=\"{}\">\n  <MsgType",
                    version.namespace()
                )));
                assert!(!xml.starts_with("<?xml"));
                let read = AppRec::parse(xml.as_bytes()).unwrap();
                assert_eq!(read, written, "{xml}");
            }
        }
    }

    #[test]
    fn written_status_carries_code_and_name() {
        let xml = sample(Version::V1_1, Status::Rejected, vec![]).to_xml();
        assert!(
            xml.contains(r#"<Status V="2" DN="Avvist" S="2.16.578.1.12.4.1.1.8221"/>"#),
            "{xml}"
        );
        assert!(xml.contains("<Name>Helsedirektoratet &amp; co</Name>"));
        assert!(xml.contains("<HCPerson>"));
    }

    #[test]
    fn refuses_bad_apprecs() {
        let bad_status = sample(Version::V1_0, Status::Ok, vec![])
            .to_xml()
            .replace(r#"Status V="1""#, r#"Status V="9""#);
        assert!(matches!(
            AppRec::parse(bad_status.as_bytes()).unwrap_err(),
            Error::InvalidValue {
                path: "Status/@V",
                ..
            }
        ));
        let no_original = format!(
            r#"<AppRec xmlns="{NAMESPACE_1_1}"><MsgType V="APPREC"/><GenDate>x</GenDate><Id>1</Id><Sender/><Receiver/><Status V="1"/></AppRec>"#
        );
        assert_eq!(
            AppRec::parse(no_original.as_bytes()).unwrap_err(),
            Error::MissingElement {
                document: "AppRec",
                path: "OriginalMsgId"
            }
        );
        let wrong_ns = r#"<AppRec xmlns="urn:other"/>"#;
        assert!(matches!(
            AppRec::parse(wrong_ns.as_bytes()).unwrap_err(),
            Error::UnexpectedDocument { .. }
        ));
        assert!(AppRec::parse(&read_nhn("messages/DIALOG_INNBYGGER_EKONTAKT.xml")).is_err());
    }
}
