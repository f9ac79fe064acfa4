#!/usr/bin/python3
"""policyd-ratelimit against bad input (acceptance 6): a 1 MB line, EOF
without the blank line, binary junk, 10,000 attributes, an unknown
request= and friends. Each is logged with a precise message, gets no
reply, and only its own connection is closed: a bystander connection
opened before keeps being answered after each one, and real Postfix
keeps delivering through the same policy service at the end."""

import os
import random
import re
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

CONFIG = """\
listen = inet:127.0.0.1:{port}
limit per_user = sasl_username rate=30/1m count=recipients
"""

GOOD = {"request": "smtpd_access_policy", "protocol_state": "RCPT",
        "sasl_username": "svc-alerts", "client_address": "127.0.0.1",
        "recipient": "x@example.net", "instance": "bystander"}

rng = random.Random(4)
junk = bytes(rng.randrange(256) for _ in range(4096))
CASES = [
    ("a 1 MB line", b"recipient=" + b"a" * (1 << 20) + b"\n\n",
     "attribute line too long"),
    ("a 1 MB line without any newline", b"x" * (1 << 20), "attribute line too long"),
    ("EOF without the blank line", b"request=smtpd_access_policy\nprotocol_state=RCPT\n",
     "connection closed in the middle of a request"),
    ("binary junk", junk + b"\n\n", "malformed attribute"),
    ("10,000 attributes", b"".join(b"a%d=b\n" % i for i in range(10000)) + b"\n",
     "too many attributes"),
    ("an unknown request=", b"request=smtpd_other_policy\nprotocol_state=RCPT\n\n",
     "unknown request type"),
    ("no request= at all", b"protocol_state=RCPT\nsender=a@b\n\n", "missing request= attribute"),
    ("a line without '='", b"request=smtpd_access_policy\nhello world\n\n",
     "malformed attribute: no '='"),
    ("a NUL byte in a value", b"request=smtpd_access_policy\nsender=a\x00b\n\n",
     "control character in value"),
]


def bad_connection(port, data, half_close):
    """Send data; return what the daemon sent back before closing (or
    None when it kept the connection open for 3 s)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    try:
        s.sendall(data)
    except OSError:
        pass                      # it may close while we are still sending
    if half_close:
        s.shutdown(socket.SHUT_WR)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        got = None
    except ConnectionResetError:
        pass
    s.close()
    return got


with Stack("policyd-badinput") as st:
    tap.stack = st
    st.start_dovecot()
    st.start_sink()
    proc, port, conf = mp.start_policyd(st, "policyd", CONFIG)
    st.start_postfix(submission=mp.restrictions(port))

    bystander = socket.create_connection(("127.0.0.1", port), timeout=5)
    bf = bystander.makefile("rwb")
    tap.is_(mp.policy_request(bf, GOOD), ["action=DUNNO"], "bystander connection answered")

    for name, data, message in CASES:
        before = st.read_log("policyd").count(message)
        got = bad_connection(port, data, half_close=name.startswith("EOF"))
        tap.ok(got == b"", "%s: connection closed without a reply" % name, diag=repr(got)[:200])
        tap.ok(wait_for(lambda: st.read_log("policyd").count(message) > before, timeout=5),
               "%s: logged \"%s\"" % (name, message))
        tap.is_(mp.policy_request(bf, GOOD), ["action=DUNNO"],
                "%s: the bystander connection is still served" % name)

    log = st.read_log("policyd")
    tap.ok(re.search(r"warning: 127\.0\.0\.1:\d+: attribute line too long; closing connection",
                     log), "log lines name the client and the error", diag=log[-600:])
    tap.ok(len(log) < 64 * 1024, "junk is not copied into the log (%d bytes)" % len(log))

    s = mp.login(st, "svc-alerts")
    res, data = mp.transaction(s, "alerts@planapulse.ai", ["after@example.net"])
    s.quit()
    tap.is_((res[0][0], data and data[0]), (250, 250),
            "Postfix still delivers through the policy service")
    tap.ok(proc.poll() is None, "policyd-ratelimit is still running")
    bystander.close()

sys.exit(tap.done())
