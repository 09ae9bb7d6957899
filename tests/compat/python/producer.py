"""Producer driven by tests/tests/compat_python.rs through rocketmq-python-cvs
(the rocketmq-client-cpp 2.1 core).

Sends --count messages in each of four ways (send_sync, send_oneway,
send_orderly with a selector, send_batch), cycling the tags TagA, TagB, TagC,
each with keys and a user property (with --trace, recording RocketMQ message
traces), and prints one JSON line per result on
stdout:

    {"event": "sent", "mode": "sync", "body": ..., "tag": ..., "keys": ...,
     "status": "OK", "msg_id": ..., "offset": ...}

then {"event": "done", ...}. Errors print {"event": "error", ...}. With
--until-file, sync sends go on (one after another) until that file exists. The test
judges by these lines, not by the exit status: the C++ core may crash while
shutting down after the work is done.
"""

import argparse
import ctypes
import json
import os
import sys
import time

from rocketmq.client import Message, Producer
from rocketmq.exceptions import ffi_check
from rocketmq.ffi import dll

TAGS = ["TagA", "TagB", "TagC"]


def emit(**fields):
    sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()


def wait_for_file(path, deadline=60.0):
    """Returns once `path` exists (the test creates it), or after `deadline` s."""
    end = time.time() + deadline
    while path and not os.path.exists(path) and time.time() < end:
        time.sleep(0.05)


def build(topic, run, mode, i):
    body = "%s-%s-%d" % (run, mode, i)
    tag = TAGS[i % len(TAGS)]
    keys = "key-%s-%d" % (mode, i)
    msg = Message(topic)
    msg.set_body(body)
    msg.set_tags(tag)
    msg.set_keys(keys)
    msg.set_property("compat_prop", "prop-" + body)
    return msg, dict(body=body, index=i, tag=tag, keys=keys, prop="prop-" + body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--namesrv", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--run", required=True, help="prefix of every body, unique per test run")
    ap.add_argument("--count", type=int, default=6, help="messages per send mode")
    ap.add_argument("--modes", default="sync,oneway,orderly,batch")
    ap.add_argument("--trace", action="store_true", help="turn the client's message trace on")
    ap.add_argument("--access-key", default=None, help="sign every request (RocketMQ ACL)")
    ap.add_argument("--secret-key", default=None)
    ap.add_argument("--until-file", default=None,
                    help="sync mode: send until this file exists (at most 180 s) instead of --count times")
    ap.add_argument("--stay-until", default=None,
                    help="after the last send, stay up until this file exists (at most 60 s): "
                         "the C++ core drops message-trace records still queued at shutdown")
    args = ap.parse_args()

    producer = Producer(args.group, timeout=10000)
    producer.set_namesrv_addr(args.namesrv)
    if args.access_key:
        producer.set_session_credentials(args.access_key, args.secret_key, "ALIYUN")
    producer.set_log_root_path(os.path.join(os.environ.get("HOME", "."), "logs"))
    if args.trace:
        # CTraceModel OPEN (0); the binding has no wrapper for it, nor argtypes
        # (without them ctypes would pass the handle as a 32-bit int).
        dll.SetProducerMessageTrace.argtypes = [ctypes.c_void_p, ctypes.c_int]
        dll.SetProducerMessageTrace.restype = ctypes.c_int
        ffi_check(dll.SetProducerMessageTrace(producer._handle, 0))
    producer.start()
    emit(event="started", pid=os.getpid())
    t0 = time.time()
    modes = args.modes.split(",")
    def indexes(mode):
        if mode == "sync" and args.until_file:
            i, end = 0, time.time() + 180
            while not os.path.exists(args.until_file) and time.time() < end:
                yield i
                i += 1
        else:
            yield from range(args.count if mode != "batch" else 1)

    for mode in modes:
        for i in indexes(mode):
            try:
                if mode == "sync":
                    msg, info = build(args.topic, args.run, mode, i)
                    r = producer.send_sync(msg)
                    emit(event="sent", mode=mode, status=r.status.name, msg_id=r.msg_id, offset=r.offset, **info)
                elif mode == "oneway":
                    msg, info = build(args.topic, args.run, mode, i)
                    producer.send_oneway(msg)
                    emit(event="sent", mode=mode, status="OK", msg_id=None, offset=None, **info)
                elif mode == "orderly":
                    msg, info = build(args.topic, args.run, mode, i)
                    # Every orderly message goes to queue (i % 2): the selector
                    # gets the queue count and the int argument.
                    selected = []

                    def selector(mq_size, _msg, arg, selected=selected):
                        q = ctypes.cast(arg, ctypes.POINTER(ctypes.c_int))[0] % 2 % mq_size
                        selected.append(q)
                        return q

                    r = producer.send_orderly(msg, i, queue_selector=selector)
                    emit(event="sent", mode=mode, status=r.status.name, msg_id=r.msg_id, offset=r.offset,
                         queue_id=selected[-1] if selected else None, **info)
                elif mode == "batch":
                    msgs, infos = [], []
                    for j in range(args.count):
                        msg, info = build(args.topic, args.run, mode, j)
                        msgs.append(msg)
                        infos.append(info)
                    r = producer.send_batch(msgs)
                    for info in infos:
                        emit(event="sent", mode=mode, status=r.status.name, msg_id=None, offset=r.offset,
                             batch_msg_id=r.msg_id, **info)
                else:
                    emit(event="error", mode=mode, error="unknown mode")
            except Exception as e:  # report and go on: the test decides
                emit(event="error", mode=mode, index=i, error="%s: %s" % (type(e).__name__, e))
                if args.until_file:
                    time.sleep(0.1)
    emit(event="done", seconds=round(time.time() - t0, 3))
    wait_for_file(args.stay_until)
    try:
        producer.shutdown()
        emit(event="shutdown")
    except Exception as e:
        emit(event="shutdown_error", error=str(e))
    sys.stdout.flush()
    # Skip the destructors of the C++ core: they have crashed on exit before.
    os._exit(0)


if __name__ == "__main__":
    main()
