#!/usr/bin/python3
"""A stand-in for the RELEASED .NET listener of Helsenorge.Messaging (7.0.2).

Written from the reference library's published behaviour (its
MessageListener, ErrorMessageListener, AsynchronousMessageListener and
AmqpCore.SendErrorAsync at tag 7.0.2), not from its code, on Debian's
python3-qpid-proton. It consumes its own async queue and its own error
queue and records every decision as one JSON line.

usage: dotnet_listener.py --url URL --exchange EXCHANGE
           --async-queue NAME --error-queue NAME --record FILE
           [--error-queue-of HERID=QUEUE ...] [--answer-shape SHAPE]
           [--script FILE.json]

What the released listener does with one message, in its order:
1. Reads fromHerId and toHerId (int.Parse of the property's text; absent
   = 0), the message-id (a string or uuid, anything else is an unknown
   error) and the body (a data section's bytes; any other body is null).
   An unparsable HER-id is an unknown error: the message is released for
   another try ("released").
2. Header checks: toHerId, fromHerId (0 = missing), subject ("Label"),
   applicationTimeStamp (absent or unparsable), content-type. Missing ones
   are reported as `transport:invalid-field-value`, description "One or
   more fields are missing", errorConditionData the names (`ContentType;`
   for a message without content-type). The same on the error queue: a
   report without content-type is refused and answered.
3. `text/plain` or `application/soap+xml` (case-insensitive): the body is
   parsed as XML (an empty body, no XML or a DTD fail:
   `transport:not-well-formed-xml`, "Could not deserialize payload"; a
   null body is an unknown error). Any other content-type is protected: on
   the error queue its body is skipped; on the async queue this stand-in
   cannot decrypt (it holds no keys) and hands it over unopened.
4. Error queue: the report is taken in ("taken-in", with its error
   properties). Async queue: handed to the application ("accepted"),
   unless the script says the application or the certificate checks
   refuse it (an action per message that passed the header checks).
Refusing = sending an error report to the sender's error queue (looked up
by fromHerId in --error-queue-of, the stand-in's address registry), then
accepting (completing) the original; a fromHerId <= 0 gets no report; a
sender the registry does not know leaves the message unsettled ("held").

Answer shapes (--answer-shape, or "shape" in a script action):
- released: what 7.0.2 sends (Clone(false)): a clone of the original with
  its header (delivery-count, durable, ttl, ...), delivery and message
  annotations, properties (message-id, correlation-id, reply-to,
  content-type, ...) and application properties (cpaId, ...), to = the
  error queue, from/to HER-ids swapped as decimal strings, and
  originalMessageId, receiverTimeStamp (`MM/dd/yyyy HH:mm:ss`),
  errorCondition, errorDescription, errorConditionData each set ONLY when
  the original does not carry it already; body one empty data section.
  (So a refused error report is answered with its own errorCondition.)
- released-with-body: the same with the original's body copied (the
  clone PROFILE.md describes; releases before 6.0.7 sent no body section).
- 846: the unreleased fresh message: new message-id ("N" form), subject,
  to, from/to swapped, applicationTimeStamp now, the five error
  properties, no content-type, correlation-id or reply-to, one empty
  data section.
Every transfer also gets X-ExecutingAssembly, X-ExecutingAssemblyVersion,
X-TargetFramework and enqueuedTimeUtc (`yyyy-MM-ddTHH:mm:ss`).

Script (--script): a JSON list, one action per async message that passes
the header checks, in order; when it runs out the message is accepted:
  {"refuse": {"condition": "...", "description": "...", "data": [..] | null},
   "shape": "released" | "released-with-body" | "846"}   or   {"accept": true}

Record lines (to --record, flushed per line): {"queue", "message_id":
[amqp type, text], "correlation_id", "content_type", "subject",
"properties": {name: [amqp type, text]}, "body_len", "decision", and for
refusals "condition", "description", "data", "answer" ({"queue", "shape",
"message_id", "content_type", "properties"} or null), for taken-in reports
"report" (errorCondition, errorDescription, errorConditionData,
originalMessageId, receiverTimeStamp as text or null)}. Prints "ready" on
stdout once both receivers are attached. Runs until killed.
"""
import argparse
import json
import os
import re
import sys
import uuid
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proton_peer import amqp_type, text  # noqa: E402

from cproton import pn_message_get_content_encoding, pn_message_get_content_type  # noqa: E402
from proton import Message  # noqa: E402
from proton.handlers import MessagingHandler  # noqa: E402
from proton.reactor import Container  # noqa: E402

PROTECTED = "application/pkcs7-mime; smime-type=signed-and-enveloped-data"
UNPROTECTED = ("text/plain", "application/soap+xml")
ERROR_KEYS = (
    "errorCondition",
    "errorDescription",
    "errorConditionData",
    "originalMessageId",
    "receiverTimeStamp",
)
SYSTEM_INFORMATION = {
    "X-ExecutingAssembly": "Helsenorge.Messaging, Version=7.0.2.0, Culture=neutral, PublicKeyToken=null",
    "X-ExecutingAssemblyVersion": "7.0.2.0",
    "X-TargetFramework": ".NETCoreApp,Version=v8.0",
}
SHAPES = ("released", "released-with-body", "846")


class UnknownError(Exception):
    """What the reference's catch-all handles: release and try again later."""


def her_id(props, key):
    """int.Parse of the property's text, 0 when absent (AmqpMessage.FromHerId)."""
    if key not in props:
        return 0
    value = text(props[key])
    if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        raise UnknownError("%s: %r is not an integer (FormatException)" % (key, value))
    number = int(value)
    if not -(2**31) <= number < 2**31:
        raise UnknownError("%s: %r overflows an int (OverflowException)" % (key, value))
    return number


def parses_as_time(value):
    """DateTime.TryParse with the invariant culture, as far as the profile's forms go."""
    if type(value).__name__ == "timestamp":
        return True
    if not isinstance(value, str):
        return False
    candidate = value.strip()
    try:
        datetime.fromisoformat(candidate.replace("Z", "+00:00"))
        return True
    except ValueError:
        pass
    for form in ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%Y-%m-%d %H:%M:%S"):
        try:
            datetime.strptime(candidate, form)
            return True
        except ValueError:
            pass
    return False


def is_xml(body):
    """XDocument.Load: well-formed, one root, no DTD (DtdProcessing.Prohibit)."""
    import xml.etree.ElementTree as ElementTree

    if b"<!DOCTYPE" in body:
        return False
    try:
        ElementTree.fromstring(body)
        return True
    except ElementTree.ParseError:
        return False


def check_identifier(value, name):
    """IAmqpMessage.MessageId and CorrelationId: a string or a Guid; any other type throws."""
    if value is not None and not isinstance(value, (str, uuid.UUID)):
        raise UnknownError("%s of type %s (UnexpectedMessageIdentifierTypeException)" % (name, amqp_type(value)))


def now_invariant():
    """DateTime.UtcNow.ToString(DateTimeFormatInfo.InvariantInfo)."""
    return datetime.now(timezone.utc).strftime("%m/%d/%Y %H:%M:%S")


def content_type(message):
    """The content-type, None when absent (proton's property says symbol('None'))."""
    return pn_message_get_content_type(message._msg)


def content_encoding(message):
    return pn_message_get_content_encoding(message._msg)


def describe(message, queue):
    body = message.body
    return {
        "queue": queue,
        "message_id": [amqp_type(message.id), None if message.id is None else text(message.id)],
        "correlation_id": None if message.correlation_id is None else text(message.correlation_id),
        "content_type": content_type(message),
        "subject": message.subject,
        "properties": {k: [amqp_type(v), text(v)] for k, v in (message.properties or {}).items()},
        "body_len": len(body) if isinstance(body, (bytes, bytearray, memoryview)) else None,
    }


class Listener(MessagingHandler):
    def __init__(self, args):
        super().__init__(prefetch=10, auto_accept=False, auto_settle=True)
        self.args = args
        self.record_file = open(args.record, "a", encoding="utf-8")
        self.registry = {}
        for entry in args.error_queue_of or []:
            herid, queue = entry.split("=", 1)
            self.registry[int(herid)] = queue
        self.script = []
        if args.script:
            with open(args.script, encoding="utf-8") as f:
                self.script = json.load(f)
        self.attached = 0
        self.senders = {}
        self.pending = {}  # answer delivery -> (original delivery, record)

    # plumbing

    def on_start(self, event):
        self.container = event.container
        self.conn = event.container.connect(
            self.args.url, allowed_mechs="PLAIN", allow_insecure_mechs=True
        )
        for queue in (self.args.async_queue, self.args.error_queue):
            event.container.create_receiver(
                self.conn, source="/amq/queue/" + queue, name="dotnet-" + queue
            )

    def on_link_opened(self, event):
        if event.receiver is not None and event.receiver.remote_source.address:
            self.attached += 1
            if self.attached == 2:
                print("ready", flush=True)

    def on_link_error(self, event):
        sys.stderr.write("link error: %s\n" % event.link.remote_condition)
        sys.exit(2)

    def on_transport_error(self, event):
        sys.stderr.write("transport error: %s\n" % event.transport.condition)
        sys.exit(2)

    def write(self, record):
        self.record_file.write(json.dumps(record) + "\n")
        self.record_file.flush()

    def sender(self, queue):
        if queue not in self.senders:
            target = "/exchange/%s/%s" % (self.args.exchange, queue)
            self.senders[queue] = self.container.create_sender(self.conn, target=target)
        return self.senders[queue]

    def send(self, message, queue, original_delivery, record):
        props = dict(message.properties or {})
        props.update(SYSTEM_INFORMATION)
        props["enqueuedTimeUtc"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        message.properties = props
        message.inferred = True  # bytes as one data section
        delivery = self.sender(queue).send(message)
        self.pending[delivery] = (original_delivery, record)

    def on_accepted(self, event):
        if event.delivery in self.pending:
            original, record = self.pending.pop(event.delivery)
            self.accept(original)  # RemoveMessageFromQueueAfterError, after the send
            self.write(record)

    def on_rejected(self, event):
        self.answer_failed(event, "rejected")

    def on_released(self, event):
        self.answer_failed(event, "released")

    def answer_failed(self, event, how):
        if event.delivery in self.pending:
            original, record = self.pending.pop(event.delivery)
            record["decision"] = "held"
            record["reason"] = "the broker %s the error report" % how
            self.write(record)  # the original stays unsettled, as after a failed send

    # the listener

    def on_message(self, event):
        message, delivery = event.message, event.delivery
        queue = self.args.error_queue if event.receiver.name == "dotnet-" + self.args.error_queue else self.args.async_queue
        on_error_queue = queue == self.args.error_queue
        record = describe(message, queue)
        try:
            self.handle(message, delivery, record, on_error_queue)
        except UnknownError as error:
            record["decision"] = "released"
            record["reason"] = str(error)
            self.write(record)
            # The reference releases after the lock times out: not at once.
            event.container.schedule(1.0, ReleaseLater(self, delivery))

    def handle(self, message, delivery, record, on_error_queue):
        props = message.properties or {}
        from_her_id = her_id(props, "fromHerId")
        to_her_id = her_id(props, "toHerId")
        check_identifier(message.id, "message-id")
        check_identifier(message.correlation_id, "correlation-id")
        body = message.body if isinstance(message.body, (bytes, bytearray, memoryview)) else None

        missing = []
        if to_her_id == 0:
            missing.append("toHerId")
        if from_her_id == 0:
            missing.append("fromHerId")
        if not message.subject:
            missing.append("Label")
        if not parses_as_time(props.get("applicationTimeStamp")):
            missing.append("applicationTimeStamp")
        if not content_type(message):
            missing.append("ContentType")
        if missing:
            return self.refuse(
                message, delivery, record, from_her_id, to_her_id,
                "transport:invalid-field-value", "One or more fields are missing", missing, None,
            )

        if content_type(message).lower() in UNPROTECTED:
            if body is None:
                raise UnknownError("no data section to parse (ArgumentNullException)")
            if not is_xml(bytes(body)):
                return self.refuse(
                    message, delivery, record, from_her_id, to_her_id,
                    "transport:not-well-formed-xml", "Could not deserialize payload", None, None,
                )
            record["opened"] = True
        else:
            record["opened"] = False  # error queue: skipped; async queue: no keys here

        if on_error_queue:
            record["decision"] = "taken-in"
            record["report"] = {
                key: (None if props.get(key) is None else text(props[key])) for key in ERROR_KEYS
            }
            self.accept(delivery)
            self.write(record)
            return

        action = self.script.pop(0) if self.script else {"accept": True}
        if "refuse" in action:
            refusal = action["refuse"]
            return self.refuse(
                message, delivery, record, from_her_id, to_her_id,
                refusal["condition"], refusal.get("description") or refusal["condition"],
                refusal.get("data"), action.get("shape"),
            )
        record["decision"] = "accepted"
        self.accept(delivery)
        self.write(record)

    def refuse(self, message, delivery, record, from_her_id, to_her_id, condition, description, data, shape):
        record.update(decision="refused", condition=condition, description=description, data=data)
        if from_her_id <= 0:
            record["answer"] = None  # "FromHerId is missing. No idea where to send the error"
            self.accept(delivery)
            self.write(record)
            return
        queue = self.registry.get(from_her_id)
        if queue is None:
            record["decision"] = "held"
            record["reason"] = "sender %d not in the address registry" % from_her_id
            self.write(record)  # the exception escapes the catch block: never settled
            return
        shape = shape or self.args.answer_shape
        answer = build_answer(message, queue, from_her_id, to_her_id, condition, description, data, shape)
        record["answer"] = {
            "queue": queue,
            "shape": shape,
            "message_id": None if answer.id is None else text(answer.id),
            "content_type": content_type(answer),
            "properties": {k: text(v) for k, v in answer.properties.items()},
        }
        self.send(answer, queue, delivery, record)


class ReleaseLater:
    def __init__(self, listener, delivery):
        self.listener, self.delivery = listener, delivery

    def on_timer_task(self, event):
        self.listener.release(self.delivery, delivered=True)


def condition_data(data):
    """`item;` for every non-empty item; None when the reference passes no data."""
    if data is None:
        return None
    return "".join("%s;" % item for item in data if item)


def build_answer(original, queue, from_her_id, to_her_id, condition, description, data, shape):
    if shape not in SHAPES:
        raise SystemExit("unknown answer shape %r" % shape)
    if shape == "846":
        answer = Message(body=b"")
        answer.id = uuid.uuid4().hex
        answer.subject = original.subject
        answer.address = queue
        props = {
            "fromHerId": str(to_her_id),
            "toHerId": str(from_her_id),
            "applicationTimeStamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "originalMessageId": None if original.id is None else text(original.id),
            "receiverTimeStamp": now_invariant(),
            "errorCondition": condition,
            "errorDescription": description,
        }
        if data is not None:
            props["errorConditionData"] = condition_data(data)
        answer.properties = props
        return answer

    answer = Message()
    for field in ("durable", "priority", "ttl", "first_acquirer", "delivery_count"):
        setattr(answer, field, getattr(original, field))
    if original.instructions:
        answer.instructions = dict(original.instructions)
    if original.annotations:
        answer.annotations = dict(original.annotations)
    for field in (
        "subject", "correlation_id", "creation_time",
        "group_id", "group_sequence", "id", "reply_to", "expiry_time", "reply_to_group_id",
    ):
        setattr(answer, field, getattr(original, field))
    if content_type(original) is not None:
        answer.content_type = content_type(original)
    if content_encoding(original) is not None:
        answer.content_encoding = content_encoding(original)
    answer.address = queue
    props = dict(original.properties or {})
    props["fromHerId"] = str(to_her_id)
    props["toHerId"] = str(from_her_id)
    added = {
        "originalMessageId": None if original.id is None else text(original.id),
        "receiverTimeStamp": now_invariant(),
        "errorCondition": condition,
        "errorDescription": description,
    }
    if data is not None:
        added["errorConditionData"] = condition_data(data)
    for key, value in added.items():
        if key not in props:  # ContainsKey(...) == false
            props[key] = value
    answer.properties = props
    if shape == "released-with-body" and isinstance(original.body, (bytes, bytearray, memoryview)):
        answer.body = bytes(original.body)
    else:
        answer.body = b""
    return answer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--async-queue", required=True)
    parser.add_argument("--error-queue", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--error-queue-of", action="append", metavar="HERID=QUEUE")
    parser.add_argument("--answer-shape", default="released", choices=SHAPES)
    parser.add_argument("--script")
    args = parser.parse_args()
    Container(Listener(args)).run()


if __name__ == "__main__":
    main()
