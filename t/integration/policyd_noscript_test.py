#!/usr/bin/python3
"""policyd-ratelimit against a Redis-speaking server that answers NOSCRIPT to
EVAL as well as EVALSHA (a broken proxy in front of Redis; helper-122):
each script call was sent again with EVAL after every NOSCRIPT, without
end, each with the whole script (30,000 EVALs in 3 s from one request),
and every reply counted as progress, so the 1 s drop never came. Now a
call is sent again once: the request is answered by on_store_error
(closed: 451), the server sees at most one EVAL per call, and the error
summary names NOSCRIPT. The server here is this test's own (no real
Redis answers that way); every other store test uses real redis-server."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

CALLS = {"EVAL": 0, "EVALSHA": 0}


def serve(conn):
    buf = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        cmds, buf = mp.resp_commands(buf + chunk)
        for argv in cmds:
            name = argv[0].upper().decode()
            if name == "SCRIPT":
                rep = b"$40\r\n" + b"0" * 40 + b"\r\n"
            elif name in CALLS:
                CALLS[name] += 1
                rep = b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
            elif name == "TIME":
                rep = b"*2\r\n$10\r\n%d\r\n$1\r\n0\r\n" % int(time.time())
            elif name == "MGET":
                rep = b"*%d\r\n" % (len(argv) - 1) + b"$-1\r\n" * (len(argv) - 1)
            else:
                rep = b"+OK\r\n"
            try:
                conn.sendall(rep)
            except OSError:
                return


def policy(port, stage, instance):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rwb")
    started = time.monotonic()
    reply = mp.policy_request(f, {
        "request": "smtpd_access_policy", "protocol_state": stage, "instance": instance,
        "sasl_username": "u", "recipient": "r@example.net", "client_address": "192.0.2.7"})
    sock.close()
    return (reply and reply[0]), time.monotonic() - started


def main():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    rport = srv.getsockname()[1]

    def accept():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    with Stack("policyd-noscript") as st:
        tap.stack = st
        proc, port, _ = mp.start_policyd(st, "policyd", """\
listen = inet:127.0.0.1:{port}
workers = 1
store = redis://127.0.0.1:%d/0
on_store_error = closed
limit a = sasl_username rate=5/1h
""" % rport)
        time.sleep(1)
        replies = [policy(port, "END-OF-MESSAGE", "n%d" % i) for i in range(5)]
        tap.ok(all(r and r.startswith("action=451") for r, _ in replies),
               "5 charging requests: each answered 451 (on_store_error = closed)",
               diag=repr(replies))
        time.sleep(3)
        evals = CALLS["EVAL"]
        time.sleep(2)
        tap.ok(evals <= 5 and CALLS["EVAL"] == evals,
               "at most one EVAL per call, and none after (%d EVAL, %d EVALSHA)"
               % (CALLS["EVAL"], CALLS["EVALSHA"]))
        tap.ok(wait_for(lambda: "NOSCRIPT" in st.read_log("policyd"), timeout=15),
               "the error summary names NOSCRIPT", diag=st.read_log("policyd")[-1200:])
        tap.ok(proc.poll() is None, "policyd-ratelimit is still running")
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
