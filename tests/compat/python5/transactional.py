"""Transactional producer driven by tests/tests/compat_grpc.rs through
rocketmq-python-client 5.x (gRPC).

Sends three half messages to --topic: one it commits, one it rolls back, and one it
leaves open, which the broker's check-back (a RecoverOrphanedTransactionCommand over
the Telemetry stream) resolves: the checker commits it. Prints one JSON line each:

    {"event": "sent", "body": ..., "message_id": ..., "transaction_id": ..., "action": ...}
    {"event": "checked", "body": ..., "message_id": ...}

then {"event": "done"} once the check-back came (or {"event": "error", ...}), and
stays up (its answer to the check is sent after `check` returns) until --until-file
exists.
"""

import argparse
import json
import os
import sys
import time
import threading
import traceback

from rocketmq import (ClientConfiguration, Credentials, Message, Producer,
                      TransactionChecker, TransactionResolution)


def emit(**fields):
    sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()


class Checker(TransactionChecker):
    def __init__(self):
        self.checked = threading.Event()

    def check(self, message):
        body = message.body.decode()
        emit(event="checked", body=body, message_id=message.message_id, tag=message.tag)
        self.checked.set()
        return TransactionResolution.COMMIT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--until-file", required=True)
    args = ap.parse_args()

    checker = Checker()
    producer = Producer(ClientConfiguration(args.endpoint, Credentials()), (args.topic,), checker)
    try:
        producer.startup()
        for action in ("commit", "rollback", "open"):
            msg = Message()
            msg.topic = args.topic
            body = "%s-tx-%s" % (args.run, action)
            msg.body = body.encode()
            msg.tag = "Tx"
            msg.keys = "key-" + action
            transaction = producer.begin_transaction()
            receipt = producer.send(msg, transaction)
            emit(event="sent", body=body, action=action, message_id=receipt.message_id,
                 transaction_id=receipt.transaction_id)
            if action == "commit":
                transaction.commit()
            elif action == "rollback":
                transaction.rollback()
        if not checker.checked.wait(60):
            emit(event="error", step="check", error="no transaction check-back within 60 s")
            return
        emit(event="done")
        end = time.time() + 60
        while not os.path.exists(args.until_file) and time.time() < end:
            time.sleep(0.05)
    except Exception as e:  # noqa: BLE001 - the test reads the reason
        emit(event="error", step="send", error=repr(e), trace=traceback.format_exc())
    finally:
        producer.shutdown()


if __name__ == "__main__":
    main()
