//! The file registry round trip and CPA resolution over it.

use helsemelding_protect::Certificate;
use helsemelding_registry::file::{ImportDocument, Imported, NewParty};
use helsemelding_registry::resolve::resolve_by_cpa_id;
use helsemelding_registry::{resolve, Direction, Error, FileRegistry, ProfileSource, Registry};
use helsemelding_testkit::fixtures::read_nhn;
use helsemelding_testkit::pki::{TestPki, Usage};

const OLD_CPA: &str = "49391409-e528-4919-b4a3-9ccdab72c8c1";
const NEW_CPA: &str = "9333f3de-e85c-4c26-9066-6800055b1b8e";

fn certificate(issued: &helsemelding_testkit::pki::Issued) -> Certificate {
    Certificate::from_x509(issued.cert.clone())
}

#[tokio::test]
async fn add_then_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::new(dir.path());
    let pki = TestPki::new("Registry test CA");
    let signing = pki.issue("Legekontoret sign", Usage::Signing);
    let encryption = pki.issue("Legekontoret enc", Usage::Encryption);
    registry
        .add_party(&NewParty {
            her_id: 4242,
            name: "Legekontoret".into(),
            signing_certificate: certificate(&signing),
            encryption_certificate: certificate(&encryption),
            cpp: None,
            queue_prefix: None,
        })
        .unwrap();
    let party = registry.communication_party(4242).await.unwrap();
    assert_eq!(party.name, "Legekontoret");
    assert!(party.active);
    let names = party.queues.names();
    assert_eq!(names.async_queue.as_deref(), Some("4242_async"));
    assert_eq!(names.sync.as_deref(), Some("4242_sync"));
    assert_eq!(names.error.as_deref(), Some("4242_error"));
    assert_eq!(names.syncreply.as_deref(), Some("4242_syncreply"));
    let certificates = registry.certificates(4242).await.unwrap();
    assert_eq!(
        certificates.current_signing().unwrap().serial_hex(),
        signing.serial_hex()
    );
    assert_eq!(
        certificates.current_encryption().unwrap().serial_hex(),
        encryption.serial_hex()
    );
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("parties/4242"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // With only an address record, resolution says so and allows any function.
    let profile = resolve(&registry, 1, 4242).await.unwrap();
    assert_eq!(profile.source, ProfileSource::AddressRecord);
    assert_eq!(profile.queues.error.as_deref(), Some("4242_error"));
    assert_eq!(
        profile
            .encryption_certificate
            .as_ref()
            .unwrap()
            .serial_hex(),
        encryption.serial_hex()
    );
    assert!(profile.allows("DIALOG_INNBYGGER_TEST", Direction::Send));
    assert!(profile.amqp_allowed());

    // A queue prefix replaces the HER-id in the queue names.
    registry
        .add_party(&NewParty {
            her_id: 4343,
            name: "Demo".into(),
            signing_certificate: certificate(&signing),
            encryption_certificate: certificate(&encryption),
            cpp: None,
            queue_prefix: Some("demo".into()),
        })
        .unwrap();
    assert_eq!(
        registry.party(4343).unwrap().queues.names().sync.as_deref(),
        Some("demo_sync")
    );
    assert!(matches!(registry.party(1), Err(Error::NotFound { .. })));
}

fn imported_registry() -> (tempfile::TempDir, FileRegistry) {
    let dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::new(dir.path());
    for (file, expected) in [
        ("CommunicationDetails_93252.xml", Imported::Party(93252)),
        ("CommunicationDetails_94867.xml", Imported::Party(94867)),
        (
            "CommunicationDetailsRest_8141705.json",
            Imported::Party(8141705),
        ),
        ("CPA_93252.xml", Imported::Cpa(OLD_CPA.into())),
        ("CPA_Rest_93252.xml", Imported::Cpa(NEW_CPA.into())),
        ("CPP_93239.xml", Imported::Cpp(93239)),
        ("CPP_93238.xml", Imported::Cpp(93238)),
    ] {
        let got = registry
            .import(&read_nhn(&format!("registry/{file}")))
            .unwrap();
        assert_eq!(got, expected, "{file}");
    }
    (dir, registry)
}

#[tokio::test]
async fn import_keeps_documents_unchanged() {
    let (dir, registry) = imported_registry();
    let stored = std::fs::read(dir.path().join("parties/93252/party.xml")).unwrap();
    assert_eq!(stored, read_nhn("registry/CommunicationDetails_93252.xml"));
    let stored = std::fs::read(dir.path().join(format!("cpas/{OLD_CPA}.xml"))).unwrap();
    assert_eq!(stored, read_nhn("registry/CPA_93252.xml"));
    assert_eq!(registry.party(8141705).unwrap().name, "Allmennlege");
    // Certificates come from the CPP when no PEM files exist.
    let certificates = registry.certificates(93238).await.unwrap();
    assert_eq!(
        certificates.current_signing().unwrap().serial_hex(),
        "10a3f7e99720077e30aa"
    );
    assert!(matches!(
        registry.certificates(94867).await,
        Err(Error::NotFound { .. })
    ));
    for degenerate in ["CPP_94867.xml", "CPA_94867.xml"] {
        let error = registry
            .import(&read_nhn(&format!("registry/{degenerate}")))
            .unwrap_err();
        assert!(
            matches!(error, Error::EmptyDocument { .. }),
            "{degenerate}: {error}"
        );
    }
    assert!(registry.import(b"not a document").is_err());
}

#[test]
fn stored_answers_what_an_import_would_replace() {
    let (dir, registry) = imported_registry();
    for (file, target) in [
        ("CommunicationDetails_93252.xml", Imported::Party(93252)),
        (
            "CommunicationDetailsRest_8141705.json",
            Imported::Party(8141705),
        ),
        ("CPP_93238.xml", Imported::Cpp(93238)),
        ("CPA_93252.xml", Imported::Cpa(OLD_CPA.into())),
    ] {
        let bytes = read_nhn(&format!("registry/{file}"));
        let document = ImportDocument::read(&bytes).unwrap();
        assert_eq!(document.target().unwrap(), target, "{file}");
        assert_eq!(registry.stored(&target).unwrap(), Some(bytes), "{file}");
    }
    assert_eq!(registry.stored(&Imported::Cpp(93252)).unwrap(), None);
    // A record in the other form replaces the one there.
    let json = serde_json::json!({"herId": 93252, "name": "Alexander Dahl", "active": true});
    let json = serde_json::to_vec(&json).unwrap();
    let document = ImportDocument::read(&json).unwrap();
    assert_eq!(
        registry.import_document(&document, &json).unwrap(),
        Imported::Party(93252)
    );
    assert_eq!(
        registry.stored(&Imported::Party(93252)).unwrap(),
        Some(json)
    );
    assert!(!dir.path().join("parties/93252/party.xml").exists());
}

#[tokio::test]
async fn resolution_prefers_cpa_then_cpp_then_record() {
    let (_dir, registry) = imported_registry();

    // Two CPAs cover 93238 and 93252: the one that starts latest wins.
    let profile = resolve(&registry, 93238, 93252).await.unwrap();
    assert_eq!(profile.source, ProfileSource::Cpa);
    assert_eq!(profile.cpa_id.as_deref(), Some(NEW_CPA));
    assert_eq!(profile.queues.async_queue.as_deref(), Some("93252_async"));
    assert_eq!(profile.queues.sync.as_deref(), Some("93252_sync"));
    assert_eq!(profile.queues.error.as_deref(), Some("93252_error"));
    assert_eq!(
        profile
            .encryption_certificate
            .as_ref()
            .unwrap()
            .serial_hex(),
        "1d5a932bb4694cdc8ec4"
    );
    assert_eq!(
        profile.signing_certificates[0].serial_hex(),
        "1d5be79f34c56e4e944e"
    );
    assert!(profile.allows("DIALOG_INNBYGGER_DIGITALBRUKER", Direction::Send));
    assert!(profile.allows("DIALOG_INNBYGGER_DIGITALBRUKER", Direction::Receive));
    assert!(!profile.allows("NO_SUCH_FUNCTION", Direction::Send));

    // A message received under the older CPA is judged by that CPA.
    let older = resolve_by_cpa_id(&registry, OLD_CPA, 93238, 93252)
        .await
        .unwrap();
    assert_eq!(older.cpa_id.as_deref(), Some(OLD_CPA));
    assert!(matches!(
        resolve_by_cpa_id(
            &registry,
            "00000000-0000-0000-0000-000000000000",
            93238,
            93252
        )
        .await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        resolve_by_cpa_id(&registry, "../../etc/passwd", 93238, 93252).await,
        Err(Error::Invalid { .. })
    ));

    // No CPA with 93239: its CPP is used.
    let profile = resolve(&registry, 93238, 93239).await.unwrap();
    assert_eq!(profile.source, ProfileSource::Cpp);
    assert_eq!(profile.cpa_id, None);
    assert_eq!(profile.queues.async_queue.as_deref(), Some("93239_async"));
    assert_eq!(profile.queues.error, None);
    assert_eq!(
        profile
            .encryption_certificate
            .as_ref()
            .unwrap()
            .serial_hex(),
        "10a2dc098eeb4fc80678"
    );
    assert!(profile.allows("DIALOG_INNBYGGER_DIGITALBRUKER", Direction::Send));
    assert!(!profile.allows("NO_SUCH_FUNCTION", Direction::Receive));

    // Neither CPA nor CPP: the address record alone.
    let profile = resolve(&registry, 93238, 94867).await.unwrap();
    assert_eq!(profile.source, ProfileSource::AddressRecord);
    assert_eq!(profile.queues.async_queue.as_deref(), Some("94867_async"));
    assert_eq!(profile.queues.error.as_deref(), Some("94867_error"));
    assert!(profile.encryption_certificate.is_none());

    // Nothing at all: not found.
    assert!(matches!(
        resolve(&registry, 93238, 1).await,
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn cpa_v2_checks_both_parties() {
    let cpa = helsemelding_registry::cppa::parse_collaboration_document(&read_nhn(
        "registry/CPA_v2_51795e2c-9d39-44e0-9168-5bee38f20819.xml",
    ))
    .unwrap();
    let profile = helsemelding_registry::resolve::from_cpa(&cpa, 8093238, 8093240, None).unwrap();
    assert_eq!(profile.source, ProfileSource::Cpa);
    assert_eq!(profile.queues.async_queue.as_deref(), Some("8093240_async"));
    assert_eq!(profile.queues.sync.as_deref(), Some("8093240_sync"));
    assert!(profile.allows("LagreSkjemainstans", Direction::Send));
    assert!(!profile.allows("NO_SUCH_FUNCTION", Direction::Send));
    assert!(helsemelding_registry::resolve::from_cpa(&cpa, 8093238, 1, None).is_err());
}

#[tokio::test]
async fn disabled_amqp_transport_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::new(dir.path());
    let record =
        br#"{"herId": 5151, "name": "Stengt", "active": true, "amqpTransportStatus": "Disabled",
        "amqpAddress": {"amqpAsyncQueue": "tb.test.nhn.no/NHNTESTServiceBus/5151_async"}}"#;
    assert_eq!(registry.import(record).unwrap(), Imported::Party(5151));
    let profile = resolve(&registry, 1, 5151).await.unwrap();
    assert!(!profile.amqp_allowed());
    assert_eq!(profile.queues.async_queue.as_deref(), Some("5151_async"));
}
