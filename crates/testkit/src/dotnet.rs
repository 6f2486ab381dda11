//! A stand-in for the released .NET listener of NHN's reference library
//! (Helsenorge.Messaging 7.0.2): `peers/dotnet_listener.py` on Debian's
//! python3-qpid-proton, written from the library's published behaviour
//! (see the script's docstring for every rule it follows).
//!
//! It consumes its own async and error queue, refuses what the released
//! listener refuses (a message without content-type, also on the error
//! queue; an unprotected report whose body is not XML), takes in protected
//! error reports without reading their body, answers refusals on the
//! sender's error queue in the released clone shape (or the unreleased
//! #846 shape), and records every decision as one JSON line that
//! [`DotnetListener::decisions`] reads back.
//!
//! ```no_run
//! # use helsemelding_testkit::dotnet::*;
//! let peer = DotnetListener::start(
//!     &DotnetListenerOptions::new("amqp://u:p@127.0.0.1:5672", "NHNTestServiceBus", "9_async", "9_error")
//!         .error_queue_of(8, "8_error"),
//! );
//! let decisions = peer.decisions();
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the peer may take to attach its two receivers.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// The peer script.
pub fn dotnet_listener_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/dotnet_listener.py")
}

/// The shape of the error reports the peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerShape {
    /// What 7.0.2 sends: a clone of the original (its content-type,
    /// message-id, correlation-id, header, annotations, application
    /// properties such as cpaId) with the error properties added where
    /// the original has none, and one empty data section.
    Released,
    /// The released clone with the original's body copied (the clone
    /// PROFILE.md describes).
    ReleasedWithBody,
    /// The unreleased #846 shape: a fresh message, no content-type, one
    /// empty data section.
    Unreleased846,
}

impl AnswerShape {
    /// The name the script takes.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerShape::Released => "released",
            AnswerShape::ReleasedWithBody => "released-with-body",
            AnswerShape::Unreleased846 => "846",
        }
    }

    fn parse(text: &str) -> Option<AnswerShape> {
        [
            AnswerShape::Released,
            AnswerShape::ReleasedWithBody,
            AnswerShape::Unreleased846,
        ]
        .into_iter()
        .find(|shape| shape.as_str() == text)
    }
}

/// What the peer's application (or certificate checks) does with the
/// next async message that passed the header checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Hand it over and accept it (also what happens once the script ends).
    Accept,
    /// Refuse it with an error report to the sender's error queue.
    Refuse {
        /// e.g. `transport:invalid-certificate`.
        condition: String,
        /// `errorDescription`.
        description: String,
        /// `errorConditionData` values; `None` sends no such property
        /// (released clones and #846 alike).
        data: Option<Vec<String>>,
        /// The report's shape; `None` = the listener's.
        shape: Option<AnswerShape>,
    },
}

impl Step {
    /// A refusal with `condition` and `data`, in `shape`.
    pub fn refuse(condition: &str, data: Option<Vec<String>>, shape: AnswerShape) -> Step {
        Step::Refuse {
            condition: condition.to_owned(),
            description: format!("refused by the .NET stand-in: {condition}"),
            data,
            shape: Some(shape),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Step::Accept => serde_json::json!({ "accept": true }),
            Step::Refuse {
                condition,
                description,
                data,
                shape,
            } => serde_json::json!({
                "refuse": { "condition": condition, "description": description, "data": data },
                "shape": shape.map(AnswerShape::as_str),
            }),
        }
    }
}

/// How to start the peer.
#[derive(Debug, Clone)]
pub struct DotnetListenerOptions {
    /// `amqp://user:password@host:port` (loopback in the tests).
    pub url: String,
    /// The exchange senders target (`/exchange/<exchange>/<queue>`).
    pub exchange: String,
    /// Its async queue (consumed as `/amq/queue/<name>`).
    pub async_queue: String,
    /// Its error queue.
    pub error_queue: String,
    /// Its address registry: the error queue of each sender HER-id. A
    /// sender missing here leaves a refused message unsettled ("held").
    pub error_queues: Vec<(u32, String)>,
    /// The shape of its error reports.
    pub answer_shape: AnswerShape,
    /// One step per async message that passes the header checks.
    pub script: Vec<Step>,
}

impl DotnetListenerOptions {
    /// A listener on `async_queue` and `error_queue` that answers in the
    /// released shape and hands every valid async message over.
    pub fn new(
        url: &str,
        exchange: &str,
        async_queue: &str,
        error_queue: &str,
    ) -> DotnetListenerOptions {
        DotnetListenerOptions {
            url: url.to_owned(),
            exchange: exchange.to_owned(),
            async_queue: async_queue.to_owned(),
            error_queue: error_queue.to_owned(),
            error_queues: Vec::new(),
            answer_shape: AnswerShape::Released,
            script: Vec::new(),
        }
    }

    /// Error reports about messages from `her_id` go to `queue`.
    pub fn error_queue_of(mut self, her_id: u32, queue: &str) -> DotnetListenerOptions {
        self.error_queues.push((her_id, queue.to_owned()));
        self
    }

    /// The shape of its error reports.
    pub fn answer_shape(mut self, shape: AnswerShape) -> DotnetListenerOptions {
        self.answer_shape = shape;
        self
    }

    /// What its application does with successive valid async messages.
    pub fn script(mut self, steps: Vec<Step>) -> DotnetListenerOptions {
        self.script = steps;
        self
    }
}

/// What the peer decided about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An error report taken in (reached the error callback, completed).
    TakenIn,
    /// An async message handed to the application and completed.
    Accepted,
    /// Refused: reported to the sender (see [`Decision::answer`]) and completed.
    Refused,
    /// An unknown error (e.g. a HER-id that is no integer): released for another try.
    Released,
    /// Refused but the report could not be sent: left unsettled.
    Held,
}

/// The error properties of a report the peer took in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenReport {
    /// `errorCondition`.
    pub error_condition: Option<String>,
    /// `errorDescription`.
    pub error_description: Option<String>,
    /// `errorConditionData`.
    pub error_condition_data: Option<String>,
    /// `originalMessageId`.
    pub original_message_id: Option<String>,
    /// `receiverTimeStamp`.
    pub receiver_time_stamp: Option<String>,
}

/// The error report the peer sent for a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The queue it went to.
    pub queue: String,
    /// The shape it was sent in.
    pub shape: AnswerShape,
    /// Its message-id.
    pub message_id: Option<String>,
    /// Its content-type.
    pub content_type: Option<String>,
    /// Application properties as text (before the sender's extras).
    pub properties: BTreeMap<String, String>,
}

/// One recorded decision.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The queue it came from (the peer's async or error queue).
    pub queue: String,
    /// The message-id as text.
    pub message_id: Option<String>,
    /// The AMQP type of the message-id (`string`, `UUID`, `ulong`, ...).
    pub message_id_type: String,
    /// The correlation-id as text.
    pub correlation_id: Option<String>,
    /// The content-type.
    pub content_type: Option<String>,
    /// The subject.
    pub subject: Option<String>,
    /// Application properties: name → (AMQP type, value as text).
    pub properties: BTreeMap<String, (String, String)>,
    /// Length of the data section (`None`: no data section).
    pub body_len: Option<u64>,
    /// What the peer did with it.
    pub verdict: Verdict,
    /// Why it was refused: condition, description, data (refusals only).
    pub condition: Option<String>,
    /// The refusal's description.
    pub description: Option<String>,
    /// The refusal's `errorConditionData` values.
    pub data: Option<Vec<String>>,
    /// What it sent back (refusals with a known sender only).
    pub answer: Option<Answer>,
    /// The error properties (reports taken in only).
    pub report: Option<TakenReport>,
    /// The JSON line as recorded.
    pub raw: Value,
}

impl Decision {
    fn from_json(raw: Value) -> Decision {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let verdict = match raw["decision"].as_str() {
            Some("taken-in") => Verdict::TakenIn,
            Some("accepted") => Verdict::Accepted,
            Some("refused") => Verdict::Refused,
            Some("released") => Verdict::Released,
            Some("held") => Verdict::Held,
            other => panic!("dotnet listener: unknown decision {other:?} in {raw}"),
        };
        let properties = raw["properties"]
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(k, v)| {
                        let typed = (
                            v[0].as_str().unwrap_or_default().to_owned(),
                            v[1].as_str().unwrap_or_default().to_owned(),
                        );
                        (k.clone(), typed)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let answer = raw["answer"].as_object().map(|a| Answer {
            queue: a["queue"].as_str().unwrap_or_default().to_owned(),
            shape: AnswerShape::parse(a["shape"].as_str().unwrap_or_default())
                .expect("a known answer shape"),
            message_id: text(&a["message_id"]),
            content_type: text(&a["content_type"]),
            properties: a["properties"]
                .as_object()
                .map(|map| {
                    map.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
        });
        let report = raw["report"].as_object().map(|r| TakenReport {
            error_condition: text(&r["errorCondition"]),
            error_description: text(&r["errorDescription"]),
            error_condition_data: text(&r["errorConditionData"]),
            original_message_id: text(&r["originalMessageId"]),
            receiver_time_stamp: text(&r["receiverTimeStamp"]),
        });
        Decision {
            queue: text(&raw["queue"]).unwrap_or_default(),
            message_id: text(&raw["message_id"][1]),
            message_id_type: text(&raw["message_id"][0]).unwrap_or_default(),
            correlation_id: text(&raw["correlation_id"]),
            content_type: text(&raw["content_type"]),
            subject: text(&raw["subject"]),
            properties,
            body_len: raw["body_len"].as_u64(),
            verdict,
            condition: text(&raw["condition"]),
            description: text(&raw["description"]),
            data: raw["data"].as_array().map(|values| {
                values
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect()
            }),
            answer,
            report,
            raw,
        }
    }
}

/// The running peer; killed when dropped.
pub struct DotnetListener {
    child: Mutex<Child>,
    record: PathBuf,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl DotnetListener {
    /// Starts the peer and waits (at most 20 s) until both its receivers
    /// are attached. Panics with its stderr if it fails to start.
    pub fn start(options: &DotnetListenerOptions) -> DotnetListener {
        let dir = tempfile::tempdir().expect("a temp dir for the dotnet listener");
        let record = dir.path().join("decisions.jsonl");
        let script = dir.path().join("script.json");
        let steps: Vec<Value> = options.script.iter().map(Step::to_json).collect();
        std::fs::write(&script, Value::Array(steps).to_string()).unwrap();
        let mut command = Command::new("/usr/bin/python3");
        command
            .arg(dotnet_listener_script())
            .args(["--url", &options.url])
            .args(["--exchange", &options.exchange])
            .args(["--async-queue", &options.async_queue])
            .args(["--error-queue", &options.error_queue])
            .arg("--record")
            .arg(&record)
            .args(["--answer-shape", options.answer_shape.as_str()])
            .arg("--script")
            .arg(&script);
        for (her_id, queue) in &options.error_queues {
            command
                .arg("--error-queue-of")
                .arg(format!("{her_id}={queue}"));
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect(
                "running /usr/bin/python3 (scripts/broker install provides python3-qpid-proton)",
            );
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut stderr_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) if line.trim() == "ready" => {
                        let _ = ready_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let peer = DotnetListener {
            child: Mutex::new(child),
            record,
            stderr,
            _dir: dir,
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                return peer;
            }
            peer.assert_running();
            if Instant::now() > deadline {
                panic!(
                    "dotnet listener not ready within {READY_WITHIN:?}: {}",
                    peer.stderr()
                );
            }
        }
    }

    /// Everything it has decided so far, in order. Panics (with its
    /// stderr) if the peer is no longer running.
    pub fn decisions(&self) -> Vec<Decision> {
        self.assert_running();
        self.recorded()
    }

    fn recorded(&self) -> Vec<Decision> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        // Only complete lines: the peer may be writing the last one.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        complete
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                Decision::from_json(
                    serde_json::from_str(line).unwrap_or_else(|e| {
                        panic!("dotnet listener: bad record line {line:?}: {e}")
                    }),
                )
            })
            .collect()
    }

    /// The decisions about messages from `queue`.
    pub fn decisions_on(&self, queue: &str) -> Vec<Decision> {
        self.decisions()
            .into_iter()
            .filter(|d| d.queue == queue)
            .collect()
    }

    /// Blocks until at least `count` decisions are recorded; panics after
    /// `within` (with what was recorded and the peer's stderr) or if the
    /// peer exits. For blocking tests; async tests poll [`Self::decisions`].
    pub fn wait_for(&self, count: usize, within: Duration) -> Vec<Decision> {
        let deadline = Instant::now() + within;
        loop {
            let decisions = self.decisions();
            if decisions.len() >= count {
                return decisions;
            }
            if Instant::now() > deadline {
                panic!(
                    "dotnet listener: {} of {count} decisions within {within:?}: {:?}\nstderr: {}",
                    decisions.len(),
                    decisions.iter().map(|d| &d.raw).collect::<Vec<_>>(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Panics (with its stderr) if the peer is no longer running.
    pub fn assert_running(&self) {
        let status = self.child.lock().unwrap().try_wait();
        if let Ok(Some(status)) = status {
            panic!("dotnet listener exited ({status}): {}", self.stderr());
        }
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stops the peer (kill) and returns everything it decided.
    pub fn stop(self) -> Vec<Decision> {
        self.assert_running();
        self.kill();
        self.recorded()
    }

    fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for DotnetListener {
    fn drop(&mut self) {
        self.kill();
    }
}
