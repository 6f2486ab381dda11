//! `helsemelding send` from one party and `helsemelding listen` on the
//! other, over the local transport: the payload arrives byte for byte.

mod common;
use common::{msghead, BrokerSection, Setup};

#[test]
fn send_then_listen_delivers_the_payload_byte_for_byte() {
    let setup = Setup::new(BrokerSection::Local);
    let a = setup.party(91462);
    let b = setup.party(109989);
    let payload = msghead(91462, 109989);
    let payload_file = setup.dir.path().join("note.xml");
    std::fs::write(&payload_file, &payload).unwrap();

    let (ok, stdout, stderr) = setup.run(
        &a,
        &[
            "send",
            "--to",
            "109989",
            "--function",
            "DIALOG_INNBYGGER_TEST",
            payload_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "send failed: {stderr}");
    let id = stdout.trim().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{stdout}");

    let out = setup.dir.path().join("out");
    let (ok, _, stderr) = setup.run(
        &b,
        &[
            "listen",
            "--out-dir",
            out.to_str().unwrap(),
            "--count",
            "1",
            "--idle-exit",
            "30",
        ],
    );
    assert!(ok, "listen failed: {stderr}");
    let received = std::fs::read(out.join(format!("{id}.xml"))).unwrap();
    assert_eq!(received, payload.as_bytes());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(meta["from_her_id"], 91462);
    assert_eq!(meta["to_her_id"], 109989);
    assert_eq!(meta["function"], "DIALOG_INNBYGGER_TEST");
    assert_eq!(meta["message_id"], id.as_str());
    assert_eq!(
        meta["metadata"]["X-MessageInfo-Type"],
        "DIALOG_INNBYGGER_TEST"
    );
}
