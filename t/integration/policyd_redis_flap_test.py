#!/usr/bin/python3
"""policyd-ratelimit's log when its Redis connection flaps (helper-122): an
endpoint that accepts and closes at once, or closes at the first script,
changed the connection's state every second, each change a line ("redis:
connected", "connection lost", ...): about 7,200 lines an hour. Now at
most 6 state lines a minute; the rest are counted and said once the
minute is over. The endpoints here are this test's own sockets (a real
Redis does not behave so); every other Redis test uses redis-server.

Two endpoints, 15 s each, closed mode, 10 requests a second: at most 6
"redis:" state lines (the old code wrote one per change, about 15 to 30)."""

import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap  # noqa: E402
import mxpolicy as mp  # noqa: E402


def endpoint(mode):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve(conn):
        buf = b""
        try:
            while mode == "script":
                data = conn.recv(65536)
                if not data:
                    break
                cmds, buf = mp.resp_commands(buf + data)
                gone = False
                for argv in cmds:
                    name = argv[0].upper()
                    if name in (b"EVAL", b"EVALSHA", b"MGET", b"TIME"):
                        gone = True             # the first call: gone
                        break
                    conn.sendall(b"$40\r\n" + b"0" * 40 + b"\r\n" if name == b"SCRIPT"
                                 else b"+OK\r\n")
                if gone:
                    break
        except OSError:
            pass
        conn.close()

    def accept():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv.getsockname()[1]


def traffic(port, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            f = sock.makefile("rwb")
            mp.policy_request(f, {"request": "smtpd_access_policy",
                                  "protocol_state": "END-OF-MESSAGE", "instance": "f",
                                  "sasl_username": "u", "client_address": "192.0.2.7"})
            sock.close()
        except OSError:
            pass
        time.sleep(0.1)


def main():
    with Stack("policyd-redis-flap") as st:
        tap.stack = st
        for mode in ("close", "script"):
            rport = endpoint(mode)
            name = "policyd-" + mode
            proc, port, _ = mp.start_policyd(st, name, """\
listen = inet:127.0.0.1:{port}
workers = 1
store = redis://127.0.0.1:%d/0
on_store_error = closed
limit a = sasl_username rate=5/1h
""" % rport)
            traffic(port, 15)
            lines = [ln for ln in st.read_log(name).splitlines()
                     if re.search(r"\]: (warning: )?redis: ", ln)
                     and "state lines not logged" not in ln]
            tap.ok(len(lines) <= 6, "an endpoint that %s: %d state lines in 15 s (at most 6 a "
                   "minute)" % ("closes at once" if mode == "close" else
                                "closes at the first script", len(lines)),
                   diag="\n".join(lines[-12:]))
            tap.ok(proc.poll() is None, "policyd-ratelimit is still running")
            proc.terminate()
            proc.wait(timeout=30)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
