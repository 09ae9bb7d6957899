"""Producer driven by tests/tests/compat_grpc.rs through rocketmq-python-client 5.x,
Apache RocketMQ's official Python client, which speaks gRPC
(apache.rocketmq.v2.MessagingService) to the broker's gRPC endpoint.

Sends --count NORMAL messages to --topic (tags TagA/TagB, a key and a user property
each), --count FIFO messages to --fifo-topic in two message groups, and --count DELAY
messages to --topic delivered --delay seconds after sending, one after another.
Prints one JSON line per result on stdout:

    {"event": "sent", "kind": "normal"|"fifo"|"delay", "index": i, "body": ...,
     "tag": ..., "keys": ..., "group": ..., "deliver_at": ..., "message_id": ...,
     "offset": ...}

then {"event": "done"}. A failed send prints {"event": "error", ...} and stops.
"""

import argparse
import json
import sys
import time
import traceback

from rocketmq import ClientConfiguration, Credentials, Message, Producer


def emit(**fields):
    sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--fifo-topic", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--delay", type=int, default=2)
    args = ap.parse_args()

    producer = Producer(ClientConfiguration(args.endpoint, Credentials()), (args.topic, args.fifo_topic))
    try:
        producer.startup()
    except Exception as e:  # noqa: BLE001 - the test reads the reason
        emit(event="error", step="startup", error=repr(e), trace=traceback.format_exc())
        return
    try:
        for kind in ("normal", "fifo", "delay"):
            for i in range(args.count):
                msg = Message()
                msg.topic = args.fifo_topic if kind == "fifo" else args.topic
                body = "%s-%s-%d" % (args.run, kind, i)
                msg.body = body.encode()
                tag = "TagA" if i % 2 == 0 else "TagB"
                msg.tag = tag
                keys = "key-%s-%d" % (kind, i)
                msg.keys = keys
                msg.add_property("compat_prop", "prop-" + body)
                group = None
                deliver_at = None
                if kind == "fifo":
                    group = "group-%d" % (i % 2)
                    msg.message_group = group
                elif kind == "delay":
                    deliver_at = int(time.time()) + args.delay
                    msg.delivery_timestamp = deliver_at
                receipt = producer.send(msg)
                emit(
                    event="sent",
                    kind=kind,
                    index=i,
                    body=body,
                    tag=tag,
                    keys=keys,
                    group=group,
                    deliver_at=deliver_at,
                    message_id=receipt.message_id,
                    offset=receipt.offset,
                )
        emit(event="done")
    except Exception as e:  # noqa: BLE001 - the test reads the reason
        emit(event="error", step="send", error=repr(e), trace=traceback.format_exc())
    finally:
        producer.shutdown()


if __name__ == "__main__":
    main()
