//! The stand-in for the released .NET listener behaves as the reference
//! library's 7.0.2 listener does, on the private RabbitMQ: messages are put
//! on its queues by the independent proton peer, its answers are counted
//! on a third queue (the sender's error queue).

use std::time::Duration;

use helsemelding_testkit::broker::{Broker, TestQueue};
use helsemelding_testkit::dotnet::{
    AnswerShape, Decision, DotnetListener, DotnetListenerOptions, Verdict,
};
use helsemelding_testkit::peers::proton_peer_with;

const WAIT: Duration = Duration::from_secs(20);
const PROTECTED: &str = "application/pkcs7-mime; smime-type=signed-and-enveloped-data";
const SENDER: u32 = 8_100_001;
const PEER: u32 = 8_100_002;

struct Setup {
    broker: Broker,
    peer_async: TestQueue,
    peer_error: TestQueue,
    sender_error: TestQueue,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let broker = Broker::from_env();
        Setup {
            peer_async: broker.fresh_queue("dotnet-async"),
            peer_error: broker.fresh_queue("dotnet-error"),
            sender_error: broker.fresh_queue("sender-error"),
            dir: tempfile::tempdir().unwrap(),
            broker,
        }
    }

    fn listener(&self, shape: AnswerShape) -> DotnetListener {
        DotnetListener::start(
            &DotnetListenerOptions::new(
                self.broker.amqp_url(),
                self.broker.exchange(),
                self.peer_async.name(),
                self.peer_error.name(),
            )
            .error_queue_of(SENDER, self.sender_error.name())
            .answer_shape(shape),
        )
    }

    /// Puts a message made from `spec` (see proton_peer.py send-spec) with
    /// `body` on `queue`.
    fn put(&self, queue: &TestQueue, spec: serde_json::Value, body: &[u8]) {
        let stem = uuid::Uuid::new_v4().simple().to_string();
        let spec_file = self.dir.path().join(format!("{stem}.json"));
        let body_file = self.dir.path().join(format!("{stem}.body"));
        std::fs::write(&spec_file, spec.to_string()).unwrap();
        std::fs::write(&body_file, body).unwrap();
        let address = format!("/amq/queue/{}", queue.name());
        let out = proton_peer_with(
            &[
                "send-spec",
                self.broker.amqp_url(),
                &address,
                spec_file.to_str().unwrap(),
                body_file.to_str().unwrap(),
            ],
            WAIT,
        );
        assert_eq!(out.trim(), "sent");
    }
}

/// A header as the reference sends it, from SENDER to PEER.
fn header(id: &str, content_type: Option<&str>, extra: serde_json::Value) -> serde_json::Value {
    let mut properties = serde_json::json!({
        "fromHerId": SENDER.to_string(),
        "toHerId": PEER.to_string(),
        "applicationTimeStamp": "2026-11-23T12:00:00Z",
    });
    for (k, v) in extra.as_object().unwrap() {
        properties[k] = v.clone();
    }
    serde_json::json!({
        "id": id,
        "correlation_id": id,
        "subject": "DIALOG_INNBYGGER_TEST",
        "content_type": content_type,
        "properties": properties,
    })
}

fn report_properties(condition: &str) -> serde_json::Value {
    serde_json::json!({
        "originalMessageId": "original-1",
        "receiverTimeStamp": "11/23/2026 12:00:00",
        "errorCondition": condition,
        "errorDescription": "Invalid usage",
        "errorConditionData": "Subject: CN=x;Thumbprint: AB;",
    })
}

fn by_id<'a>(decisions: &'a [Decision], id: &str) -> &'a Decision {
    decisions
        .iter()
        .find(|d| d.message_id.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no decision about {id}: {decisions:?}"))
}

#[test]
fn the_stand_in_refuses_and_takes_in_what_the_released_listener_does() {
    let setup = Setup::new();
    let peer = setup.listener(AnswerShape::Released);

    // A message without content-type, on the async queue and on the error queue.
    setup.put(
        &setup.peer_async,
        header("no-ct-async", None, serde_json::json!({})),
        b"<a/>",
    );
    setup.put(
        &setup.peer_error,
        header(
            "no-ct-report",
            None,
            report_properties("transport:invalid-certificate"),
        ),
        b"",
    );
    // An unprotected report with an empty body (what we sent until 2026-12-01).
    setup.put(
        &setup.peer_error,
        header(
            "plain-empty",
            Some("text/plain"),
            report_properties("transport:invalid-certificate"),
        ),
        b"",
    );
    // Protected, empty body; and unprotected with an XML body: both taken in.
    setup.put(
        &setup.peer_error,
        header(
            "protected",
            Some(PROTECTED),
            report_properties("abuse:spoofing-attack"),
        ),
        b"",
    );
    setup.put(
        &setup.peer_error,
        header(
            "plain-xml",
            Some("text/plain"),
            report_properties("transport:internal-error"),
        ),
        b"<Fault/>",
    );
    let decisions = peer.wait_for(5, WAIT);

    let refused = by_id(&decisions, "no-ct-async");
    assert_eq!(refused.queue, setup.peer_async.name());
    assert_eq!(refused.verdict, Verdict::Refused, "{:?}", refused.raw);
    assert_eq!(
        refused.condition.as_deref(),
        Some("transport:invalid-field-value")
    );
    assert_eq!(refused.data, Some(vec!["ContentType".to_owned()]));
    let answer = refused.answer.as_ref().expect("answered");
    assert_eq!(answer.queue, setup.sender_error.name());
    assert_eq!(answer.shape, AnswerShape::Released);
    // A clone: the original's message-id and (no) content-type, from/to swapped.
    assert_eq!(answer.message_id.as_deref(), Some("no-ct-async"));
    assert_eq!(answer.content_type, None);
    assert_eq!(answer.properties["fromHerId"], PEER.to_string());
    assert_eq!(answer.properties["toHerId"], SENDER.to_string());
    assert_eq!(
        answer.properties["errorCondition"],
        "transport:invalid-field-value"
    );
    assert_eq!(answer.properties["errorConditionData"], "ContentType;");
    assert_eq!(answer.properties["originalMessageId"], "no-ct-async");

    // On the error queue too, and the clone keeps the report's own error
    // properties (the released code adds only those that are missing).
    let refused = by_id(&decisions, "no-ct-report");
    assert_eq!(refused.queue, setup.peer_error.name());
    assert_eq!(refused.verdict, Verdict::Refused, "{:?}", refused.raw);
    assert_eq!(
        refused.condition.as_deref(),
        Some("transport:invalid-field-value")
    );
    assert_eq!(refused.data, Some(vec!["ContentType".to_owned()]));
    let answer = refused.answer.as_ref().expect("answered");
    assert_eq!(
        answer.properties["errorCondition"],
        "transport:invalid-certificate"
    );
    assert_eq!(answer.properties["originalMessageId"], "original-1");

    let refused = by_id(&decisions, "plain-empty");
    assert_eq!(refused.verdict, Verdict::Refused, "{:?}", refused.raw);
    assert_eq!(
        refused.condition.as_deref(),
        Some("transport:not-well-formed-xml")
    );
    let answer = refused.answer.as_ref().expect("answered");
    assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
    assert_eq!(answer.properties["fromHerId"], PEER.to_string());

    for (id, condition) in [
        ("protected", "abuse:spoofing-attack"),
        ("plain-xml", "transport:internal-error"),
    ] {
        let taken = by_id(&decisions, id);
        assert_eq!(taken.verdict, Verdict::TakenIn, "{:?}", taken.raw);
        assert!(taken.answer.is_none());
        let report = taken.report.as_ref().unwrap();
        assert_eq!(report.error_condition.as_deref(), Some(condition));
        assert_eq!(report.original_message_id.as_deref(), Some("original-1"));
        assert_eq!(
            report.receiver_time_stamp.as_deref(),
            Some("11/23/2026 12:00:00")
        );
        assert_eq!(
            report.error_condition_data.as_deref(),
            Some("Subject: CN=x;Thumbprint: AB;")
        );
    }

    // Exactly the three refusals reached the sender's error queue, and
    // every original was completed.
    setup
        .broker
        .wait_for_count(setup.sender_error.name(), 3, WAIT);
    setup
        .broker
        .wait_for_count(setup.peer_error.name(), 0, WAIT);
    setup
        .broker
        .wait_for_count(setup.peer_async.name(), 0, WAIT);
    let all = peer.stop();
    assert_eq!(
        all.len(),
        5,
        "{:?}",
        all.iter().map(|d| &d.raw).collect::<Vec<_>>()
    );
}

#[test]
fn the_unreleased_846_shape_answers_an_empty_plain_report_with_not_well_formed_xml() {
    let setup = Setup::new();
    let peer = setup.listener(AnswerShape::Unreleased846);

    setup.put(
        &setup.peer_error,
        header(
            "plain-empty",
            Some("text/plain"),
            report_properties("transport:invalid-certificate"),
        ),
        b"",
    );
    // A sender the peer's registry does not know: refused, but not answered.
    let mut stranger = header("stranger", Some("text/plain"), serde_json::json!({}));
    stranger["properties"]["fromHerId"] = serde_json::json!("8100999");
    setup.put(&setup.peer_async, stranger, b"");
    let decisions = peer.wait_for(2, WAIT);

    let refused = by_id(&decisions, "plain-empty");
    assert_eq!(refused.verdict, Verdict::Refused, "{:?}", refused.raw);
    assert_eq!(
        refused.condition.as_deref(),
        Some("transport:not-well-formed-xml")
    );
    let answer = refused.answer.as_ref().expect("answered");
    assert_eq!(answer.shape, AnswerShape::Unreleased846);
    assert_eq!(answer.content_type, None);
    let new_id = answer.message_id.as_deref().unwrap();
    assert!(
        new_id.len() == 32 && new_id.chars().all(|c| c.is_ascii_hexdigit()),
        "a fresh GUID in the N form: {new_id}"
    );
    assert_eq!(
        answer.properties["errorCondition"],
        "transport:not-well-formed-xml"
    );
    assert_eq!(answer.properties["originalMessageId"], "plain-empty");
    assert!(!answer.properties.contains_key("errorConditionData"));
    let stamp = &answer.properties["receiverTimeStamp"];
    assert!(
        chrono::NaiveDateTime::parse_from_str(stamp, "%m/%d/%Y %H:%M:%S").is_ok(),
        "{stamp}"
    );

    let held = by_id(&decisions, "stranger");
    assert_eq!(held.verdict, Verdict::Held, "{:?}", held.raw);
    assert_eq!(
        held.condition.as_deref(),
        Some("transport:not-well-formed-xml")
    );
    assert!(held.answer.is_none());

    setup
        .broker
        .wait_for_count(setup.sender_error.name(), 1, WAIT);
    // The held message stays with the peer (unsettled) until it stops.
    setup
        .broker
        .wait_for_count(setup.peer_async.name(), 1, WAIT);
    peer.stop();
    setup
        .broker
        .wait_for_count(setup.peer_async.name(), 1, WAIT);
}
