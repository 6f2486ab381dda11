#!/usr/bin/python3
"""An independent AMQP 1.0 peer for the tests: Debian's python3-qpid-proton.

usage: proton_peer.py send URL ADDRESS      (sends one message, prints "sent")
       proton_peer.py receive URL ADDRESS   (receives one, accepts, prints it as JSON
                                             with the Python type of every property)
The message sent carries what NHN's .NET library sends (string HER-ids and
timestamp) plus an AMQP int, a long, a bool and a timestamp.
"""
import json
import sys

from proton import Message, int32, symbol, timestamp
from proton.utils import BlockingConnection


def text(value):
    """The value as plain text: proton's int32/timestamp print as int32(5) otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))
    return str(value)


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
        else:
            sys.exit("unknown mode " + mode)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
