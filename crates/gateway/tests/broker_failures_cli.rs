//! Finding 8: a broker that refuses our password, or that cannot be
//! reached, is said at once and plainly. A wrong password is reported in
//! seconds (not retried for a minute) with the variable to check; a `send`
//! to a broker that is not there returns after the connect timeout. Both
//! exit with status 75, print the message id and say that the message
//! waits in the outbox, where `outbox list` shows it.

use std::time::{Duration, Instant};

use helsemelding_testkit::broker::Broker;

mod common;
use common::{hand_overs, msghead, GatewayBroker, Setup, BROKER_PASSWORD_ENV};

fn send_args(to: u32, file: &str) -> Vec<String> {
    [
        "send",
        "--to",
        &to.to_string(),
        "--function",
        "DIALOG_INNBYGGER_TEST",
        file,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The refused send exits 75 as any send whose message waits in the
/// outbox (the caller must not send it again), says what to fix and that
/// the message is kept; with the right password `outbox flush` sends it
/// and the receiver gets it.
#[test]
fn a_wrong_broker_password_is_said_within_seconds_and_the_message_waits_in_the_outbox() {
    let broker = Broker::from_env();
    let base = 700_000_000 + (uuid::Uuid::new_v4().as_u128() % 100_000_000) as u32;
    let (a_id, b_id) = (base, base + 1);
    let _queues = [broker.party_queues(a_id), broker.party_queues(b_id)];
    let user = broker.credentials().0.to_owned();
    let setup = Setup::new(GatewayBroker::RabbitMq(broker.clone()));
    let a = setup.party(a_id);
    let b = setup.party(b_id);
    let payload = setup.dir().join("note.xml");
    std::fs::write(&payload, msghead(a_id, b_id)).unwrap();

    let started = Instant::now();
    let output = setup
        .command(&a)
        .env(BROKER_PASSWORD_ENV, "not-the-password")
        .args(send_args(b_id, payload.to_str().unwrap()))
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(75), "{stderr}");
    assert!(took < Duration::from_secs(8), "took {took:?}: {stderr}");
    let id = stdout.trim();
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "the id on stdout: {stdout}"
    );
    assert_eq!(stderr.lines().count(), 1, "said once: {stderr}");
    let url = url::Url::parse(broker.amqp_url()).unwrap();
    let endpoint = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    assert!(
        stderr.contains(&format!("the broker at {endpoint} refused user {user}"))
            && stderr.contains("check HELSEMELDING_BROKER_PASSWORD")
            && stderr.contains(&format!(
                "the message is recorded in the outbox as {id} and will be sent by \
                 `listen` or `outbox flush` once the credentials are right"
            )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-password"),
        "the password is never shown"
    );
    assert!(!stderr.contains("additional data"), "{stderr}");

    // Kept, and the refusal spent none of its attempts.
    let (ok, listed, stderr) = setup.run(&a, &["outbox", "list", "--json"]);
    assert!(ok, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["message_id"], id);
    assert_eq!(rows[0]["state"], "pending", "{listed}");
    assert_eq!(rows[0]["attempts"], 0, "{listed}");

    // The right password: sent, once, and received.
    let (ok, flushed, stderr) = setup.run(&a, &["outbox", "flush"]);
    assert!(ok, "{flushed} {stderr}");
    assert_eq!(flushed.trim(), "sent 1; 0 pending");
    let out = setup.dir().join("b-in");
    let listened = setup.listen_until_idle(&b, &out);
    assert_eq!(hand_overs(&listened, id), 1, "{listened}");
}

/// `send` from 91462 to 109989 through a broker at 127.0.0.1:`port` with
/// a connect timeout of 2 s: it returns within the timeout and a margin,
/// with status 75, the id on stdout, what happened on stderr, and the
/// message in the outbox.
fn send_to_an_unreachable_broker(port: u16) {
    let setup = Setup::new(GatewayBroker::Local);
    let a = setup.party(91462);
    setup.party(109989);
    let config = std::fs::read_to_string(&a).unwrap();
    let local_url = config
        .lines()
        .find(|line| line.starts_with("url = "))
        .unwrap()
        .to_owned();
    let config = config.replace(
        &local_url,
        &format!(
            "url = \"amqp://helsemelding@127.0.0.1:{port}/NHNTestServiceBus\"\nconnect_timeout_ms = 2000"
        ),
    );
    std::fs::write(&a, config).unwrap();
    let payload = setup.dir().join("note.xml");
    std::fs::write(&payload, msghead(91462, 109989)).unwrap();

    let started = Instant::now();
    let output = setup
        .command(&a)
        .env(BROKER_PASSWORD_ENV, "secret")
        .args(send_args(109989, payload.to_str().unwrap()))
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(75), "{stdout} {stderr}");
    assert!(
        took < Duration::from_secs(2 + 3),
        "took {took:?} with a connect timeout of 2 s: {stderr}"
    );
    let id = stdout.trim();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "said once: {stderr}");
    let said = stderr
        .lines()
        .find(|line| line.starts_with("helsemelding: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        said.contains(&format!("recorded in the outbox as {id}"))
            && said.contains(&format!("the broker at 127.0.0.1:{port} is unreachable"))
            && said.contains("`outbox flush`"),
        "{said}"
    );

    let (ok, stdout, stderr) = setup.run(&a, &["outbox", "list", "--json"]);
    assert!(ok, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{stdout}");
    assert_eq!(rows[0]["message_id"], id);
    assert_eq!(rows[0]["to_her_id"], 109989);
}

#[test]
fn a_send_to_a_closed_port_returns_after_the_connect_timeout_with_the_message_in_the_outbox() {
    // A port on 127.0.0.1 that nobody listens on: every attempt is refused.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    send_to_an_unreachable_broker(port);
}

#[test]
fn a_send_to_a_silent_port_returns_after_the_connect_timeout_with_the_message_in_the_outbox() {
    // Accepts TCP (the kernel's backlog) and never answers: every attempt
    // hangs until the connect timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    send_to_an_unreachable_broker(silent.local_addr().unwrap().port());
    drop(silent);
}
