#!/usr/bin/python3
"""An independent AMQP 1.0 peer for the tests: Debian's python3-qpid-proton.

usage: proton_peer.py send URL ADDRESS      (sends one message, prints "sent")
       proton_peer.py receive URL ADDRESS   (receives one, accepts, prints it as JSON
                                             with the Python type of every property)
       proton_peer.py send-spec URL ADDRESS SPEC.json BODY
                                            (sends one message made from SPEC: id,
                                             correlation_id, to, reply_to, subject,
                                             content_type, durable, properties; JSON
                                             integers become AMQP longs; BODY's bytes
                                             are its one data section; prints "sent")
       proton_peer.py receive-nhn URL ADDRESS
                                            (receives one, accepts, checks every NHN
                                             property by name and AMQP type, prints it
                                             as JSON with "problems"; exits 1 if any)
The message `send` sends carries what NHN's .NET library sends (string HER-ids and
timestamp) plus an AMQP int, a long, a bool and a timestamp.
"""
import json
import re
import sys

from proton import Message, int32, symbol, timestamp
from proton.utils import BlockingConnection


def text(value):
    """The value as plain text: proton's int32/timestamp print as int32(5) otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))
    return str(value)


def send_spec(conn, address, spec_file, body_file):
    """One message from a JSON spec, e.g. as a peer that types HER-ids as integers."""
    with open(spec_file) as f:
        spec = json.load(f)
    with open(body_file, "rb") as f:
        body = f.read()
    message = Message(
        id=spec.get("id"),
        correlation_id=spec.get("correlation_id"),
        address=spec.get("to"),
        reply_to=spec.get("reply_to"),
        subject=spec.get("subject"),
        body=body,
        properties=spec.get("properties", {}),
    )
    if spec.get("content_type") is not None:
        message.content_type = symbol(spec["content_type"])
    if spec.get("durable") is not None:
        message.durable = spec["durable"]
    message.inferred = True  # bytes body as one data section
    conn.create_sender(address).send(message)  # blocks until the broker settles it


def amqp_type(value):
    """The AMQP type proton decoded `value` from."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, symbol):
        return "symbol"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int32):
        return "int"
    if isinstance(value, int) and type(value) is int:
        return "long"
    return type(value).__name__


def describe(message):
    body = message.body
    return {
        "id": [amqp_type(message.id), message.id],
        "correlation_id": [amqp_type(message.correlation_id), message.correlation_id],
        "to": message.address,
        "reply_to": message.reply_to,
        "subject": message.subject,
        "content_type": message.content_type,
        "durable": message.durable,
        "ttl": message.ttl,
        "body_hex": bytes(body).hex() if body is not None else None,
        "properties": {k: [amqp_type(v), text(v)] for k, v in (message.properties or {}).items()},
    }


def nhn_problems(message):
    """What differs from what NHN's .NET library sends (PROFILE.md's property table)."""
    problems = []
    props = message.properties or {}

    def string_prop(name, pattern):
        value = props.get(name)
        if type(value) is not str:
            problems.append("%s: expected an AMQP string, got %s" % (name, amqp_type(value)))
        elif not re.fullmatch(pattern, value):
            problems.append("%s: %r does not match %s" % (name, value, pattern))

    string_prop("fromHerId", r"[1-9][0-9]*")
    string_prop("toHerId", r"[1-9][0-9]*")
    string_prop("applicationTimeStamp", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    if type(message.id) is not str or not message.id:
        problems.append("message-id: expected a non-empty AMQP string, got %s" % amqp_type(message.id))
    if message.correlation_id != message.id or type(message.correlation_id) is not str:
        problems.append("correlation-id: expected the message-id as a string")
    if message.durable is not True:
        problems.append("durable: expected true")
    if message.content_type != "application/pkcs7-mime; smime-type=signed-and-enveloped-data":
        problems.append("content-type: %r" % message.content_type)
    if type(message.subject) is not str or not message.subject:
        problems.append("subject: expected a non-empty string")
    if type(message.reply_to) is not str or not message.reply_to.endswith("_async"):
        problems.append("reply-to: expected our <herid>_async, got %r" % message.reply_to)
    if type(message.address) is not str or not message.address.endswith("_async"):
        problems.append("to: expected the receiver's <herid>_async, got %r" % message.address)
    if not isinstance(message.body, (bytes, bytearray, memoryview)) or len(message.body) == 0:
        problems.append("body: expected one non-empty data section")
    return problems


def main():
    mode, url, address = sys.argv[1:4]
    conn = BlockingConnection(url, allowed_mechs="PLAIN", timeout=20)
    try:
        if mode == "send":
            sender = conn.create_sender(address)
            message = Message(
                id="py-message-1",
                correlation_id="py-correlation-1",
                address="91462_async",
                reply_to="109989_async",
                subject="DIALOG_INNBYGGER_EKONTAKT",
                content_type=symbol("application/pkcs7-mime; smime-type=signed-and-enveloped-data"),
                durable=True,
                ttl=600,
                body=b"\x00\x01binary body\xff",
                properties={
                    "fromHerId": "109989",
                    "toHerId": "91462",
                    "applicationTimeStamp": "2026-11-23T12:00:00.0000000+01:00",
                    "intHerId": int32(91462),
                    "longHerId": 93252,
                    "flag": True,
                    "stamp": timestamp(1700000000123),
                },
            )
            message.inferred = True  # bytes body as a data section, as the .NET library sends
            sender.send(message)  # blocks until the broker settles it
            print("sent")
        elif mode == "receive":
            receiver = conn.create_receiver(address)
            message = receiver.receive(timeout=20)
            receiver.accept()
            body = message.body
            out = {
                "id": message.id,
                "correlation_id": message.correlation_id,
                "to": message.address,
                "reply_to": message.reply_to,
                "subject": message.subject,
                "content_type": message.content_type,
                "durable": message.durable,
                "body_hex": bytes(body).hex() if body is not None else None,
                "properties": {k: [type(v).__name__, text(v)] for k, v in (message.properties or {}).items()},
            }
            print(json.dumps(out))
        elif mode == "send-spec":
            send_spec(conn, address, sys.argv[4], sys.argv[5])
            print("sent")
        elif mode == "receive-nhn":
            receiver = conn.create_receiver(address)
            message = receiver.receive(timeout=20)
            receiver.accept()
            out = describe(message)
            out["problems"] = nhn_problems(message)
            print(json.dumps(out))
            if out["problems"]:
                sys.exit(1)
        else:
            sys.exit("unknown mode " + mode)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
