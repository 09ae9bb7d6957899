"""ACL over gRPC, driven by tests/tests/compat_grpc.rs through rocketmq-python-client
5.x: every call carries RocketMQ 5's signed `authorization` metadata.

Steps, each reported on stdout as one JSON line:
  1. a producer signing as --producer (ak:sk) sends --count messages to --topic:
     {"event": "sent", "body": ..., "message_id": ...}
  2. a producer with the producer's key but a wrong secret:
     {"event": "refused", "step": "wrong-secret", "type": ..., "code": ...}
  3. a producer signing as --consumer (no right to publish):
     {"event": "refused", "step": "no-pub", "type": ..., "code": ...}
  4. a simple consumer signing as --consumer receives and acks them all:
     {"event": "acked", "body": ...}
then {"event": "done"}. Anything unexpected: {"event": "error", ...}.
"""

import argparse
import json
import sys
import time
import traceback

from rocketmq import (ClientConfiguration, Credentials, FilterExpression, Message, Producer,
                      SimpleConsumer)


def emit(**fields):
    sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()


def config(endpoint, pair):
    ak, sk = pair.split(":", 1)
    return ClientConfiguration(endpoint, Credentials(ak, sk), request_timeout=5)


def message(topic, body):
    msg = Message()
    msg.topic = topic
    msg.body = body.encode()
    msg.tag = "Acl"
    return msg


def refused(step, endpoint, pair, topic):
    producer = Producer(config(endpoint, pair), (topic,))
    try:
        producer.startup()
        producer.send(message(topic, "must-not-be-stored-" + step))
        emit(event="error", step=step, error="accepted")
    except Exception as e:  # noqa: BLE001 - the refusal is what is tested
        emit(event="refused", step=step, type=type(e).__name__, code=getattr(e, "code", None), error=str(e))
    finally:
        try:
            producer.shutdown()
        except Exception:  # noqa: BLE001 - a producer that never started
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--producer", required=True, help="ak:sk")
    ap.add_argument("--consumer", required=True, help="ak:sk")
    ap.add_argument("--count", type=int, default=3)
    args = ap.parse_args()

    try:
        producer = Producer(config(args.endpoint, args.producer), (args.topic,))
        producer.startup()
        for i in range(args.count):
            body = "acl-%d" % i
            receipt = producer.send(message(args.topic, body))
            emit(event="sent", body=body, message_id=receipt.message_id)
        producer.shutdown()

        ak = args.producer.split(":", 1)[0]
        refused("wrong-secret", args.endpoint, ak + ":not-the-secret", args.topic)
        refused("no-pub", args.endpoint, args.consumer, args.topic)

        consumer = SimpleConsumer(config(args.endpoint, args.consumer), args.group,
                                  {args.topic: FilterExpression("*")}, await_duration=5)
        consumer.startup()
        acked = set()
        deadline = time.time() + 60
        while len(acked) < args.count and time.time() < deadline:
            for msg in consumer.receive(16, 15):
                consumer.ack(msg)
                body = msg.body.decode()
                acked.add(body)
                emit(event="acked", body=body)
        consumer.shutdown()
        emit(event="done")
    except Exception as e:  # noqa: BLE001 - the test reads the reason
        emit(event="error", step="main", error=repr(e), trace=traceback.format_exc())


if __name__ == "__main__":
    main()
