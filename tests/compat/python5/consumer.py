"""Consumer driven by tests/tests/compat_grpc.rs through rocketmq-python-client 5.x,
Apache RocketMQ's official Python client, which receives over gRPC
(ReceiveMessage, AckMessage, ChangeInvisibleDuration, QueryAssignment).

--mode simple: a SimpleConsumer receives batches and acks each message, except
  * the message whose body is --expire: on its first delivery it is made visible
    again a second later (ChangeInvisibleDuration) instead of being acked;
  * with --fail-all, every message is handled that way on every delivery (a
    consumer that always fails), so the broker's maximum attempts send it to the
    dead-letter queue.
--mode push: a PushConsumer whose listener takes every message (SUCCESS).

Runs until --until-file exists. Prints one JSON line per event on stdout:

    {"event": "started"}
    {"event": "received", "body": ..., "attempt": n, "message_id": ..., "tag": ...,
     "keys": [...], "topic": ..., "props": {...}, "group": ...}
    {"event": "acked"|"retry", "body": ..., "attempt": n}
    {"event": "error", "step": ..., "error": ...}
"""

import argparse
import json
import os
import sys
import threading
import time
import traceback

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials, FilterExpression, MessageListener,
                      PushConsumer, SimpleConsumer)

LOCK = threading.Lock()


def emit(**fields):
    with LOCK:
        sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
        sys.stdout.flush()


def describe(msg):
    return dict(
        body=msg.body.decode(errors="replace"),
        attempt=msg.delivery_attempt,
        message_id=msg.message_id,
        tag=msg.tag,
        keys=sorted(msg.keys) if msg.keys else [],
        topic=msg.topic,
        props=dict(msg.properties) if msg.properties else {},
        group=msg.message_group,
    )


class Listener(MessageListener):
    def consume(self, message):
        emit(event="received", **describe(message))
        return ConsumeResult.SUCCESS


def run_simple(args, config, subscription):
    consumer = SimpleConsumer(config, args.group, subscription, await_duration=5)
    consumer.startup()
    emit(event="started")
    expired = set()
    try:
        while not os.path.exists(args.until_file):
            try:
                messages = consumer.receive(16, args.invisible)
            except Exception as e:  # noqa: BLE001 - "no new message" is an exception here
                if "MESSAGE_NOT_FOUND" not in repr(e) and "40401" not in repr(e):
                    emit(event="error", step="receive", error=repr(e))
                    time.sleep(0.2)
                continue
            for msg in messages:
                d = describe(msg)
                emit(event="received", **d)
                body = d["body"]
                if args.fail_all or (body == args.expire and body not in expired):
                    expired.add(body)
                    consumer.change_invisible_duration(msg, 1)
                    emit(event="retry", body=body, attempt=d["attempt"])
                else:
                    consumer.ack(msg)
                    emit(event="acked", body=body, attempt=d["attempt"])
    finally:
        consumer.shutdown()


def run_push(args, config, subscription):
    consumer = PushConsumer(config, args.group, Listener(), subscription)
    consumer.startup()
    emit(event="started")
    try:
        while not os.path.exists(args.until_file):
            time.sleep(0.1)
    finally:
        consumer.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--mode", choices=("simple", "push"), required=True)
    ap.add_argument("--until-file", required=True)
    ap.add_argument("--tag", default="*")
    ap.add_argument("--invisible", type=int, default=15)
    ap.add_argument("--expire", default="")
    ap.add_argument("--fail-all", action="store_true")
    args = ap.parse_args()

    config = ClientConfiguration(args.endpoint, Credentials())
    subscription = {args.topic: FilterExpression(args.tag)}
    try:
        if args.mode == "simple":
            run_simple(args, config, subscription)
        else:
            run_push(args, config, subscription)
        emit(event="done")
    except Exception as e:  # noqa: BLE001 - the test reads the reason
        emit(event="error", step=args.mode, error=repr(e), trace=traceback.format_exc())


if __name__ == "__main__":
    main()
