//! Every NHN registry fixture parsed, with values read from the files.

use helsemelding_registry::certificates::parse_certificate_details;
use helsemelding_registry::cppa::{parse_collaboration_document, ChannelKind};
use helsemelding_registry::party::{parse_communication_party, queue_name};
use helsemelding_registry::{CertificateSummary, Error, ProfileKind};
use helsemelding_testkit::fixtures::read_nhn;

const HELSENORGE_ENC: &str = "10a2dc098eeb4fc80678";
const HELSENORGE_SIGN: &str = "10a3f7e99720077e30aa";
const COUNTERPARTY_ENC: &str = "1d5a932bb4694cdc8ec4";
const COUNTERPARTY_SIGN: &str = "1d5be79f34c56e4e944e";

struct Party {
    her_id: u32,
    name: &'static str,
    roles: usize,
    send_bindings: usize,
    receive_bindings: usize,
    async_endpoint: &'static str,
    sync_endpoint: &'static str,
    encryption: &'static str,
    signing: &'static str,
}

fn helsenorge(her_id: u32, roles: usize, bindings: usize, queue_her_id: u32) -> Party {
    Party {
        her_id,
        name: if her_id == 92462 || her_id == 93252 {
            "Testlege Testlege"
        } else {
            "Digitale innbyggertjenester"
        },
        roles,
        send_bindings: bindings,
        receive_bindings: bindings,
        async_endpoint: leak(format!("sb.test.nhn.no/DigitalDialog/{queue_her_id}_async")),
        sync_endpoint: leak(format!("sb.test.nhn.no/DigitalDialog/{queue_her_id}_sync")),
        encryption: HELSENORGE_ENC,
        signing: HELSENORGE_SIGN,
    }
}

fn counterparty(her_id: u32) -> Party {
    Party {
        her_id,
        name: "Testlege Testlege",
        roles: 14,
        send_bindings: 28,
        receive_bindings: 28,
        async_endpoint: leak(format!("sb.test.nhn.no/DigitalDialog/{her_id}_async")),
        sync_endpoint: leak(format!("sb.test.nhn.no/DigitalDialog/{her_id}_sync")),
        encryption: COUNTERPARTY_ENC,
        signing: COUNTERPARTY_SIGN,
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn check(file: &str, kind: ProfileKind, id: &str, parties: &[Party]) {
    let document = parse_collaboration_document(&read_nhn(&format!("registry/{file}")))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(document.kind, kind, "{file}");
    assert_eq!(document.id.as_deref(), Some(id), "{file}");
    assert_eq!(document.parties.len(), parties.len(), "{file}");
    for (got, want) in document.parties.iter().zip(parties) {
        let at = format!("{file} party {}", want.her_id);
        assert_eq!(got.her_id, want.her_id, "{at}");
        assert_eq!(got.name, want.name, "{at}");
        assert_eq!(got.roles.len(), want.roles, "{at}");
        let sends: usize = got.roles.iter().map(|r| r.can_send.len()).sum();
        let receives: usize = got.roles.iter().map(|r| r.can_receive.len()).sum();
        assert_eq!(
            (sends, receives),
            (want.send_bindings, want.receive_bindings),
            "{at}"
        );
        assert_eq!(
            got.endpoint(ChannelKind::AMQPAsync),
            Some(want.async_endpoint),
            "{at}"
        );
        assert_eq!(
            got.endpoint(ChannelKind::AMQPSync),
            Some(want.sync_endpoint),
            "{at}"
        );
        let certificates = got.certificate_summaries();
        // An empty `want.encryption`: the party has no keyEncipherment certificate.
        assert_eq!(
            certificates.encryption.map(|c| c.serial).as_deref(),
            Some(want.encryption).filter(|serial| !serial.is_empty()),
            "{at}"
        );
        assert_eq!(certificates.signing.unwrap().serial, want.signing, "{at}");
    }
}

#[test]
fn cpps() {
    let id = "db5342ce-2e56-47b6-b4dc-054969f96f6f";
    check(
        "CPP_93238.xml",
        ProfileKind::Cpp,
        id,
        &[helsenorge(93238, 14, 28, 93238)],
    );
    check(
        "CPP_93239.xml",
        ProfileKind::Cpp,
        id,
        &[helsenorge(93239, 15, 29, 93239)],
    );
    check(
        "CPP_91462.xml",
        ProfileKind::Cpp,
        id,
        &[helsenorge(92462, 14, 28, 93238)],
    );
    check(
        "CPP_93252.xml",
        ProfileKind::Cpp,
        id,
        &[helsenorge(93252, 14, 28, 93238)],
    );
    check(
        "CPP_Rest_93238.xml",
        ProfileKind::Cpp,
        id,
        &[helsenorge(93238, 15, 29, 93238)],
    );
    check(
        "CPP_Rest_93239.xml",
        ProfileKind::Cpp,
        id,
        &[helsenorge(93239, 15, 29, 93239)],
    );
    check(
        "msgtests_CPP_93238.xml",
        ProfileKind::Cpp,
        id,
        &[helsenorge(93238, 15, 29, 93238)],
    );
}

#[test]
fn cpas() {
    let old = "49391409-e528-4919-b4a3-9ccdab72c8c1";
    let newer = "9333f3de-e85c-4c26-9066-6800055b1b8e";
    for (file, id, other) in [
        ("CPA_93252.xml", old, 93252),
        ("CPA_49391409-e528-4919-b4a3-9ccdab72c8c1.xml", old, 93252),
        (
            "CPA_Rest_49391409-e528-4919-b4a3-9ccdab72c8c1.xml",
            old,
            93252,
        ),
        ("CPA_Rest_93252.xml", newer, 93252),
        ("CPA_93253.xml", newer, 93253),
        ("CPA_Rest_93253.xml", newer, 93253),
        ("msgtests_CPA_93252.xml", newer, 93252),
    ] {
        check(
            file,
            ProfileKind::Cpa,
            id,
            &[helsenorge(93238, 14, 28, 93238), counterparty(other)],
        );
    }
}

#[test]
fn cpa_with_changed_signing_certificate() {
    // In this variant both of 93238's certificates were replaced by the
    // counterparty's signing certificate (nonRepudiation only): told apart
    // by key usage, 93238 has a signing certificate and no encryption one.
    let mut ours = helsenorge(93238, 14, 28, 93238);
    ours.encryption = "";
    ours.signing = COUNTERPARTY_SIGN;
    check(
        "CPA_93252_ChangedSignedCertificate.xml",
        ProfileKind::Cpa,
        "49391409-e528-4919-b4a3-9ccdab72c8c1",
        &[ours, counterparty(93252)],
    );
}

#[test]
fn cpa_v2() {
    let party = |her_id: u32| Party {
        her_id,
        name: "Digitale innbyggertjenester",
        roles: 32,
        send_bindings: 69,
        receive_bindings: 69,
        async_endpoint: leak(format!("sb.test.nhn.no/NHNTESTServiceBus/{her_id}_async")),
        sync_endpoint: leak(format!("sb.test.nhn.no/NHNTESTServiceBus/{her_id}_sync")),
        encryption: "01db50cb710f23580b583e",
        signing: "01db515665a4adeed3b5cf",
    };
    check(
        "CPA_v2_51795e2c-9d39-44e0-9168-5bee38f20819.xml",
        ProfileKind::Cpa,
        "51795e2c-9d39-44e0-9168-5bee38f20819",
        &[party(8093240), party(8093238)],
    );
    let document = parse_collaboration_document(&read_nhn(
        "registry/CPA_v2_51795e2c-9d39-44e0-9168-5bee38f20819.xml",
    ))
    .unwrap();
    let first = &document.parties[0].roles[0];
    assert_eq!(
        (
            first.process.as_str(),
            first.version.as_str(),
            first.role.as_str()
        ),
        ("Dialog_Innbygger_Oppgave", "1.1", "Skjemautfyller")
    );
    assert_eq!(
        &first.send_actions()[..4],
        [
            "LagreSkjemainstans",
            "HentSkjemainstans",
            "FerdigstillSkjemainstans",
            "Apprec"
        ]
    );
    let versions: std::collections::BTreeSet<_> = document.parties[0]
        .roles
        .iter()
        .map(|r| (r.process.as_str(), r.version.as_str()))
        .collect();
    assert_eq!(versions.len(), 16);
    assert!(versions.contains(&("Dialog_Innbygger_Ekonsultasjon", "1.2")));
}

#[test]
fn roles_actions_and_certificate_dates() {
    let document = parse_collaboration_document(&read_nhn("registry/CPP_93238.xml")).unwrap();
    let party = &document.parties[0];
    let role = &party.roles[0];
    assert_eq!(role.process, "Dialog_Innbygger_Digitalbruker");
    assert_eq!(role.version, "1.1");
    assert_eq!(role.role, "DIALOG_INNBYGGER_DIGITALBRUKERreceiver");
    assert_eq!(
        role.send_actions(),
        ["DIALOG_INNBYGGER_DIGITALBRUKER", "APPREC"]
    );
    assert_eq!(
        role.receive_actions(),
        ["DIALOG_INNBYGGER_DIGITALBRUKER", "APPREC"]
    );
    assert_eq!(
        role.can_send[0].channel_id,
        "AMQPAsync_81b6cff2-7f96-4bae-b314-d70f7b0e1d62"
    );
    assert!(party.can_receive("DIALOG_INNBYGGER_DIGITALBRUKER"));
    assert!(!party.can_receive("NO_SUCH_FUNCTION"));
    let summary = CertificateSummary::of(party.encryption_certificate.as_ref().unwrap());
    assert_eq!(summary.not_before, "2014-02-05T23:00:00Z");
    assert_eq!(summary.not_after, "2017-02-06T22:59:00Z");
    assert!(
        summary.subject.contains("TEST helsenorge.no tjenester"),
        "{}",
        summary.subject
    );

    let cpa = parse_collaboration_document(&read_nhn("registry/CPA_93252.xml")).unwrap();
    assert_eq!(
        cpa.start.as_deref(),
        Some("2016-04-19T08:16:04.2494796+02:00")
    );
    let other = CertificateSummary::of(cpa.parties[1].signing_certificate.as_ref().unwrap());
    assert_eq!(other.not_before, "2014-08-14T12:28:06Z");
    assert_eq!(other.not_after, "2017-08-14T21:59:00Z");
}

#[test]
fn degenerate_profiles_give_clean_errors() {
    for file in ["CPP_94867.xml", "CPA_94867.xml"] {
        let error =
            parse_collaboration_document(&read_nhn(&format!("registry/{file}"))).unwrap_err();
        assert!(
            matches!(error, Error::EmptyDocument { .. }),
            "{file}: {error}"
        );
    }
}

struct Record {
    file: &'static str,
    her_id: u32,
    name: &'static str,
    parent: Option<u32>,
    party_type: &'static str,
    queue_her_id: u32,
    host: &'static str,
    syncreply: bool,
}

#[test]
fn communication_party_records() {
    let dd = "sb.test.nhn.no/DigitalDialog";
    let tb = "tb.test.nhn.no/NHNTESTServiceBus";
    let records = [
        Record {
            file: "CommunicationDetails_93238.xml",
            her_id: 93238,
            name: "Digitale innbyggertjenester",
            parent: Some(2397),
            party_type: "Service",
            queue_her_id: 93238,
            host: dd,
            syncreply: false,
        },
        Record {
            file: "CommunicationDetails_94867.xml",
            her_id: 94867,
            name: "Digitale innbyggertjenester",
            parent: Some(2397),
            party_type: "Service",
            queue_her_id: 94867,
            host: dd,
            syncreply: false,
        },
        Record {
            file: "CommunicationDetails_91462.xml",
            her_id: 91462,
            name: "Alexander Dahl",
            parent: Some(93237),
            party_type: "Person",
            queue_her_id: 91462,
            host: dd,
            syncreply: false,
        },
        Record {
            file: "CommunicationDetails_93252.xml",
            her_id: 93252,
            name: "Alexander Dahl",
            parent: Some(93237),
            party_type: "Person",
            queue_her_id: 93252,
            host: dd,
            syncreply: false,
        },
        Record {
            file: "msgtests_CommunicationDetails_93238.xml",
            her_id: 93238,
            name: "Alexander Dahl",
            parent: Some(93237),
            party_type: "Person",
            queue_her_id: 93238,
            host: dd,
            syncreply: false,
        },
        Record {
            file: "CommunicationDetailsRest_8141705.json",
            her_id: 8141705,
            name: "Allmennlege",
            parent: Some(8141703),
            party_type: "Service",
            queue_her_id: 8141703,
            host: tb,
            syncreply: true,
        },
        Record {
            file: "CommunicationDetailsRest_8141791.json",
            her_id: 8141791,
            name: "Jonny Karl Rønhovde",
            parent: Some(8141703),
            party_type: "Person",
            queue_her_id: 8141703,
            host: tb,
            syncreply: true,
        },
    ];
    for want in records {
        let file = want.file;
        let party = parse_communication_party(&read_nhn(&format!("registry/{file}")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(party.her_id, want.her_id, "{file}");
        assert_eq!(party.name, want.name, "{file}");
        assert_eq!(party.parent_her_id, want.parent, "{file}");
        assert_eq!(party.party_type.as_deref(), Some(want.party_type), "{file}");
        assert!(party.active, "{file}");
        let q = want.queue_her_id;
        assert_eq!(
            party.queues.async_queue,
            Some(format!("{}/{q}_async", want.host)),
            "{file}"
        );
        assert_eq!(
            party.queues.sync,
            Some(format!("{}/{q}_sync", want.host)),
            "{file}"
        );
        assert_eq!(
            party.queues.error,
            Some(format!("{}/{q}_error", want.host)),
            "{file}"
        );
        let names = party.queues.names();
        assert_eq!(names.async_queue, Some(format!("{q}_async")), "{file}");
        assert_eq!(names.syncreply.is_some(), want.syncreply, "{file}");
        assert!(
            party
                .certificate_ldap_url
                .as_deref()
                .unwrap()
                .starts_with("ldap://ldap.test4.buypass.no/"),
            "{file}"
        );
        assert!(party.amqp_allowed(), "{file}");
    }
    assert_eq!(
        queue_name("sb.test.nhn.no/DigitalDialog/93238_async"),
        "93238_async"
    );
}

#[test]
fn certificate_lookups() {
    for (file, serial) in [
        (
            "GetCertificateDetailsForEncryption_93238.xml",
            HELSENORGE_ENC,
        ),
        (
            "GetCertificateDetailsForEncryption_94867.xml",
            HELSENORGE_ENC,
        ),
        (
            "GetCertificateDetailsForValidatingSignature_93238.xml",
            HELSENORGE_SIGN,
        ),
        (
            "GetCertificateDetailsForValidatingSignature_94867.xml",
            HELSENORGE_SIGN,
        ),
        (
            "GetCertificateDetailsForEncryption_93252.xml",
            COUNTERPARTY_ENC,
        ),
        (
            "GetCertificateDetailsForValidatingSignature_93252.xml",
            COUNTERPARTY_SIGN,
        ),
    ] {
        let details = parse_certificate_details(&read_nhn(&format!("registry/{file}")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(details.certificate.serial_hex(), serial, "{file}");
        assert!(details.ldap_url.unwrap().starts_with("ldap://"), "{file}");
    }
}

/// Every CPP and CPA fixture: the certificates chosen have the key usage
/// their use requires, and each of the two is a different certificate.
#[test]
fn chosen_certificates_have_the_right_key_usage_in_every_fixture() {
    use helsemelding_protect::KeyUsage;
    let dir = helsemelding_testkit::fixtures::nhn("registry");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            (name.starts_with("CPP_") || name.starts_with("CPA_")) && name.ends_with(".xml")
        })
        .collect();
    files.sort();
    let (mut encryption_seen, mut signing_seen) = (0, 0);
    for file in &files {
        let Ok(document) = parse_collaboration_document(&read_nhn(&format!("registry/{file}")))
        else {
            // The deliberately empty 94867 documents.
            assert!(file.contains("94867"), "{file} does not parse");
            continue;
        };
        for party in &document.parties {
            let at = format!("{file} party {}", party.her_id);
            if let Some(certificate) = &party.encryption_certificate {
                let usage = certificate.key_usage().unwrap_or_default();
                assert!(
                    usage.contains(&KeyUsage::KeyEncipherment),
                    "{at}: {usage:?}"
                );
                encryption_seen += 1;
            }
            let signing = party.signing_certificate.as_ref();
            let signing = signing.unwrap_or_else(|| panic!("{at}: no signing certificate"));
            let usage = signing.key_usage().unwrap_or_default();
            assert!(usage.contains(&KeyUsage::NonRepudiation), "{at}: {usage:?}");
            assert!(
                !usage.contains(&KeyUsage::KeyEncipherment),
                "{at}: {usage:?}"
            );
            signing_seen += 1;
        }
    }
    assert!(files.len() >= 15, "{files:?}");
    assert_eq!((encryption_seen, signing_seen), (21, 22));
}

/// A CPP whose `ApplicationCertificateRef` points at the signing
/// certificate, whose `SigningCertificateRef` points at the encryption
/// certificate, and whose certIds say the opposite of the contents (`sign`
/// holds the encryption certificate): key usage decides all the same.
#[test]
fn swapped_references_and_cert_ids_do_not_fool_the_choice() {
    let original = String::from_utf8(read_nhn("registry/CPP_93238.xml")).unwrap();
    let enc_element = "<tns:Certificate tns:certId=\"enc\">";
    let sign_element = "<tns:Certificate tns:certId=\"sign\">";
    let signing_ref = "<tns:SigningCertificateRef tns:certId=\"enc\" />";
    assert_eq!(original.matches(enc_element).count(), 1);
    assert_eq!(original.matches(sign_element).count(), 1);
    assert_eq!(original.matches(signing_ref).count(), 1);
    assert!(original.contains("<tns:ApplicationCertificateRef tns:certId=\"enc\" />"));
    let swapped = original
        .replace(enc_element, "<tns:Certificate tns:certId=\"TMP\">")
        .replace(sign_element, enc_element)
        .replace("<tns:Certificate tns:certId=\"TMP\">", sign_element)
        .replace(
            signing_ref,
            "<tns:SigningCertificateRef tns:certId=\"sign\" />",
        );
    let document = parse_collaboration_document(swapped.as_bytes()).unwrap();
    let certificates = document.parties[0].certificate_summaries();
    assert_eq!(certificates.encryption.unwrap().serial, HELSENORGE_ENC);
    assert_eq!(certificates.signing.unwrap().serial, HELSENORGE_SIGN);
}
