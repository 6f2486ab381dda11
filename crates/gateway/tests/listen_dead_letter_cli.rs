//! Issue 12, finding 3 (part): `listen` says loudly at start which of the
//! queues it consumes have no dead-letter path (a message it rejects would
//! be dropped by the broker), by RabbitMQ's management API when
//! `broker.management_url` is configured; it still listens. The private
//! RabbitMQ of scripts/test.

use helsemelding_testkit::broker::Broker;

mod common;
use common::{BrokerSection, Setup};

#[test]
fn listen_warns_at_start_of_a_queue_without_a_dead_letter_path() {
    let broker = Broker::from_env();
    let her_id = 700_000_000 + fastrand::u32(0..100_000_000);
    let _queues = broker.party_queues(her_id);
    let setup = Setup::new(BrokerSection::RabbitMq(broker.clone()));
    let config = setup.party(her_id);
    let async_queue = format!("{her_id}_async");
    broker.redeclare_without_dead_letter(&async_queue);

    // Without the management API: a note that nothing was checked.
    let out = setup.dir.path().join("out");
    let (ok, _, stderr) = setup.run(
        &config,
        &[
            "listen",
            "--idle-exit",
            "1",
            "--out-dir",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("set broker.management_url"), "{stderr}");
    assert!(!stderr.contains("WARNING"), "{stderr}");

    let text = std::fs::read_to_string(&config).unwrap();
    let with_management = text.replacen(
        "[broker]\n",
        &format!(
            "[broker]\nmanagement_url = \"{}\"\n",
            broker.management_url()
        ),
        1,
    );
    assert_ne!(text, with_management);
    std::fs::write(&config, with_management).unwrap();
    let (ok, _, stderr) = setup.run(
        &config,
        &[
            "listen",
            "--idle-exit",
            "1",
            "--out-dir",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "a missing dead-letter path is a warning only: {stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("WARNING"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(&format!("queue {async_queue} has no dead-letter path")),
        "{stderr}"
    );
    assert!(warnings[0].contains(&format!("{her_id}_dl")), "{stderr}");
    // Said before the listener takes anything.
    let said = stderr.find("WARNING").unwrap();
    assert!(!stderr[..said].contains("received"), "{stderr}");
    // The password never shows.
    let (_, password) = broker.credentials();
    assert!(!stderr.contains(password), "{stderr}");
}
