"""Push consumer driven by tests/tests/compat_python.rs through
rocketmq-python-cvs (the rocketmq-client-cpp 2.1 core).

Subscribes --topic with the TAG expression --expr in CLUSTERING or
BROADCASTING mode and prints one JSON line per received message:

    {"event": "received", "body": ..., "msg_id": ..., "tag": ..., "keys": ...,
     "prop": ..., "queue_id": ..., "queue_offset": ..., "reconsume_times": ...}

It prints {"event": "started"} once the consumer started, and
{"event": "done", "received": N} once it received --expect messages
(deliveries failed on purpose with --fail-once print "failed" and don't count) and then
--linger seconds more passed without new ones (so duplicates would show), or
{"event": "deadline", ...} when --deadline seconds passed first. The test
judges by these lines, not by the exit status: the C++ core may crash while
shutting down.
"""

import argparse
import ctypes
import json
import os
import sys
import threading
import time

from rocketmq.client import MessageModel, PushConsumer, RecvMessage
from rocketmq.exceptions import ffi_check
from rocketmq.ffi import _CConsumeStatus, dll


def emit(**fields):
    with LOCK:
        sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
        sys.stdout.flush()


LOCK = threading.Lock()


def text(v):
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--namesrv", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--expr", default="*")
    ap.add_argument("--model", choices=["clustering", "broadcasting"], default="clustering")
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--deadline", type=float, default=60.0)
    ap.add_argument("--linger", type=float, default=1.5)
    ap.add_argument("--instance", default=None)
    ap.add_argument("--fail-once", action="append", default=[],
                    help="body whose first delivery the handler fails (RECONSUME_LATER)")
    ap.add_argument("--trace", action="store_true", help="turn the client's message trace on")
    ap.add_argument("--access-key", default=None, help="sign every request (RocketMQ ACL)")
    ap.add_argument("--secret-key", default=None)
    ap.add_argument("--stay-until", default=None,
                    help="after the last message, stay up until this file exists (at most 60 s): "
                         "the C++ core drops message-trace records still queued at shutdown")
    args = ap.parse_args()

    model = MessageModel.CLUSTERING if args.model == "clustering" else MessageModel.BROADCASTING
    consumer = PushConsumer(args.group, message_model=model)
    consumer.set_namesrv_addr(args.namesrv)
    if args.access_key:
        consumer.set_session_credentials(args.access_key, args.secret_key, "ALIYUN")
    consumer.set_log_root_path(os.path.join(os.environ.get("HOME", "."), "logs"))
    if args.instance:
        consumer.set_instance_name(args.instance)
    consumer.set_thread_count(2)
    if args.trace:
        # CTraceModel OPEN (0); the binding has no wrapper for it, nor argtypes
        # (without them ctypes would pass the handle as a 32-bit int).
        dll.SetPushConsumerMessageTrace.argtypes = [ctypes.c_void_p, ctypes.c_int]
        dll.SetPushConsumerMessageTrace.restype = ctypes.c_int
        ffi_check(dll.SetPushConsumerMessageTrace(consumer._handle, 0))

    state = {"count": 0, "last": time.time()}
    cond = threading.Condition()

    fail_once = set(args.fail_once)

    def on_message(msg):
        body = text(msg.body)
        failing = body in fail_once and msg.reconsume_times == 0
        emit(
            event="failed" if failing else "received",
            body=body,
            msg_id=text(msg.id),
            topic=text(msg.topic),
            tag=text(msg.tags),
            keys=text(msg.keys),
            prop=text(msg.get_property("compat_prop")),
            queue_id=msg.queue_id,
            queue_offset=msg.queue_offset,
            reconsume_times=msg.reconsume_times,
        )
        if failing:
            return False
        with cond:
            state["count"] += 1
            state["last"] = time.time()
            cond.notify_all()
        return True

    # PushConsumer.subscribe() turns a handler exception into CONSUME_SUCCESS
    # (it re-raises inside ctypes, which then returns 0), so register the C
    # callback directly to be able to answer RECONSUME_LATER.
    def c_callback(_consumer, cmsg):
        try:
            ok = on_message(RecvMessage(cmsg))
        except Exception as e:  # never let an exception cross into C++
            emit(event="handler_error", error="%s: %s" % (type(e).__name__, e))
            ok = False
        return (_CConsumeStatus.CONSUME_SUCCESS if ok else _CConsumeStatus.RECONSUME_LATER).value

    ffi_check(dll.Subscribe(consumer._handle, args.topic.encode(), args.expr.encode()))
    consumer._register_callback(c_callback)
    consumer.start()
    emit(event="started", pid=os.getpid())

    start = time.time()
    outcome = "deadline"
    with cond:
        while True:
            now = time.time()
            if now - start > args.deadline:
                break
            if state["count"] >= args.expect and now - state["last"] >= args.linger:
                outcome = "done"
                break
            cond.wait(0.1)
        received = state["count"]
    emit(event=outcome, received=received, seconds=round(time.time() - start, 3))
    end = time.time() + 60
    while args.stay_until and not os.path.exists(args.stay_until) and time.time() < end:
        time.sleep(0.05)
    try:
        consumer.shutdown()
        emit(event="shutdown")
    except Exception as e:
        emit(event="shutdown_error", error=str(e))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
