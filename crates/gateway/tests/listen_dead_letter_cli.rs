//! Issue 12, finding 3 (part): `listen` says loudly at start which of the
//! queues it consumes have no dead-letter path (a message it rejects would
//! be dropped by the broker), by RabbitMQ's management API when
//! `broker.management_url` is configured; it still listens. The private
//! RabbitMQ of scripts/test.

use std::time::Duration;

use helsemelding_testkit::broker::Broker;

mod common;
use common::{GatewayBroker, Setup};

#[test]
fn listen_warns_at_start_of_a_queue_without_a_dead_letter_path() {
    let broker = Broker::from_env();
    let her_id = 700_000_000 + fastrand::u32(0..100_000_000);
    let _queues = broker.party_queues(her_id);
    let setup = Setup::new(GatewayBroker::RabbitMq(broker.clone()));
    let config = setup.party(her_id);
    let async_queue = format!("{her_id}_async");
    broker.redeclare_without_dead_letter(&async_queue);

    // Without the management API: a note that nothing was checked.
    let out = setup.dir().join("out");
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

/// Sends one message that nobody can be told of (fromHerId `abc`) to `queue`.
fn send_unreportable(broker: &Broker, queue: &str, to: u32) {
    use helsemelding_transport::{Message, Transport, Value};
    use helsemelding_transport_amqp::{AmqpOptions, AmqpTransport};
    let url = format!("{}/{}", broker.amqp_url(), broker.exchange());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let transport = AmqpTransport::new(&url, AmqpOptions::default()).unwrap();
        let mut message = Message::new(b"not even CMS".to_vec());
        message.message_id = Some("unreportable-1".into());
        message.subject = Some("DIALOG_INNBYGGER_TEST".into());
        message.content_type = Some("application/pkcs7-mime; smime-type=enveloped-data".into());
        let properties = &mut message.application_properties;
        properties.insert("fromHerId".into(), Value::String("abc".into()));
        properties.insert("toHerId".into(), Value::Long(i64::from(to)));
        properties.insert(
            "applicationTimeStamp".into(),
            Value::String("2026-12-02T10:00:00".into()),
        );
        let mut sender = transport.sender(queue).await.unwrap();
        sender.send(message).await.unwrap();
        transport.close().await.unwrap();
    });
}

fn parked_ids(setup: &Setup, config: &std::path::Path) -> Vec<(i64, serde_json::Value)> {
    let (ok, out, stderr) = setup.run(config, &["parked", "list", "--json"]);
    assert!(ok, "{stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    rows.into_iter()
        .map(|row| (row["id"].as_i64().unwrap(), row))
        .collect()
}

#[test]
fn listen_keeps_what_it_gives_up_where_the_broker_would_delete_it_and_parked_manages_it() {
    let broker = Broker::from_env();
    let her_id = 700_000_000 + fastrand::u32(0..100_000_000);
    let _queues = broker.party_queues(her_id);
    let setup = Setup::new(GatewayBroker::RabbitMq(broker.clone()));
    let config = setup.party(her_id);
    let async_queue = format!("{her_id}_async");
    broker.redeclare_without_dead_letter(&async_queue);
    let text = std::fs::read_to_string(&config).unwrap();
    let management = format!(
        "[broker]\nmanagement_url = \"{}\"\n",
        broker.management_url()
    );
    std::fs::write(&config, text.replacen("[broker]\n", &management, 1)).unwrap();
    send_unreportable(&broker, &async_queue, her_id);

    let out = setup.dir().join("out");
    let listen = |setup: &Setup| {
        let (ok, _, stderr) = setup.run(
            &config,
            &[
                "listen",
                "--idle-exit",
                "2",
                "--out-dir",
                out.to_str().unwrap(),
            ],
        );
        assert!(ok, "{stderr}");
        stderr
    };
    let stderr = listen(&setup);
    assert!(
        stderr.contains("kept in our store instead (`helsemelding parked list`)"),
        "{stderr}"
    );
    let parked = parked_ids(&setup, &config);
    assert_eq!(parked.len(), 1, "{parked:?}");
    let (id, row) = &parked[0];
    assert_eq!(row["queue"], async_queue);
    assert_eq!(row["message_id"], "unreportable-1");
    assert_eq!(
        row["header"]["application_properties"]["fromHerId"]["value"],
        "abc"
    );
    assert!(
        row["reason"].as_str().unwrap().contains("fromHerId abc"),
        "{row}"
    );
    let (ok, listed, _) = setup.run(&config, &["parked", "list"]);
    assert!(ok && listed.contains("unreportable-1"), "{listed}");
    broker.wait_for_count(&async_queue, 0, Duration::from_secs(10));

    // Put back, it is judged afresh (and kept again); then dropped for good.
    let (ok, said, stderr) = setup.run(&config, &["parked", "requeue", &id.to_string()]);
    assert!(ok, "{stderr}");
    assert!(
        said.contains(&format!("put back on {async_queue}")),
        "{said}"
    );
    assert!(parked_ids(&setup, &config).is_empty());
    broker.wait_for_count(&async_queue, 1, Duration::from_secs(20));
    listen(&setup);
    let again = parked_ids(&setup, &config);
    assert_eq!(again.len(), 1, "{again:?}");
    let (ok, said, stderr) = setup.run(&config, &["parked", "drop", &again[0].0.to_string()]);
    assert!(ok, "{stderr}");
    assert!(said.contains("dropped"), "{said}");
    assert!(parked_ids(&setup, &config).is_empty());
    let (ok, _, stderr) = setup.run(&config, &["parked", "drop", &again[0].0.to_string()]);
    assert!(
        !ok && stderr.contains("no parked message has this id"),
        "{stderr}"
    );

    let (ok, audit, _) = setup.run(&config, &["audit", "list", "--json"]);
    assert!(ok);
    assert_eq!(audit.matches("\"parked-removed\"").count(), 2, "{audit}");
    assert_eq!(audit.matches("\"kind\": \"parked\"").count(), 2, "{audit}");
}
