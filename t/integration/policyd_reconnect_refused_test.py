#!/usr/bin/python3
"""policyd-ratelimit when a client makes Postfix reconnect its policy
client mid-transaction at will, and recipient_domain for addresses
Postfix routes without an '@' (an outside attacker's findings, helper-100;
real Postfix 3.7 with its defaults, smtp-sink as the next hop):

  1. RCPT TO:<x\\x01y@...> makes this daemon close the policy connection
     ("control character in value"; Postfix retries on a new one, closed
     too, and answers 451 4.3.5), so a recipient let through before it
     sits on a closed connection. A RCPT this daemon then refused on the
     new connection counted there as a recipient seen: recipient_count 1
     was not more than the new connection's count, and the recipient let
     through was never charged (4 of 4 messages through recipient_domain
     1/1h). Now only RCPTs let through are counted, daemon-wide per
     transaction, and a connection whose transaction had RCPTs let through
     on an earlier one does not trust its own list: exactly 1 of 4. The
     same with a RCPT the policy let through and a later restriction
     refused (it stood for the one on the closed connection): 1 of 3.
     Two recipients that way: taken over from the closed connection with
     their keys, and charged (they were 451 4.3.0 on every attempt).
  2. RCPT TO:<bang.example!u1> (swap_bangpath = yes: delivered to
     u1@bang.example) was charged to "[unqualified]"; u2%pct.example
     (allow_percent_hack = yes) too. Now to bang.example and pct.example:
     the next message to each domain is deferred.
"""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

CTL = b"RCPT TO:<x\x01y@spent.example>"


class Raw:
    """an SMTP client that sends any bytes: one command, its last reply line"""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.s.makefile("rb")
        self.reply()
        self.cmd(b"EHLO client.mxkit.test")

    def reply(self):
        lines = [self.f.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(self.f.readline())
        return lines[-1].decode(errors="replace").strip()

    def cmd(self, line):
        self.s.sendall(line + b"\r\n")
        return self.reply()

    def close(self):
        self.cmd(b"QUIT")
        self.s.close()


def session(st, before, after, subject):
    """MAIL, RCPT each of before, the RCPT that closes the policy
    connection, RCPT each of after, DATA: (RCPT replies, DATA reply)"""
    c = Raw(st.port("postfix-smtp"))
    c.cmd(b"MAIL FROM:<sender@client.example>")
    rcpts = [c.cmd(b"RCPT TO:<%s>" % r.encode()) for r in before]
    rcpts.append(c.cmd(CTL) if after is not None else "(none)")
    rcpts += [c.cmd(b"RCPT TO:<%s>" % r.encode()) for r in after or []]
    data = c.cmd(b"DATA")
    if data.startswith("354"):
        c.s.sendall(b"Subject: %s\r\n\r\nhello\r\n.\r\n" % subject.encode())
        data = c.reply()
    else:
        c.cmd(b"RSET")
    c.close()
    return rcpts, data


def sink_count(st, subject):
    return sum("Subject: %s" % subject in m for m in st.sink_messages())


def test_forced_reconnect(st, proc):
    rcpts, data = session(st, ["a@spent.example"], None, "prime")
    tap.ok(data.startswith("250"), "one message spends spent.example's 1/1h", diag=data)
    runs = [session(st, ["v%d@victim.example" % i], ["x%d@spent.example" % i], "refused")
            for i in range(4)]
    tap.ok(all(r[1].startswith("451 4.3.5") and r[2].startswith("450") for r, _ in runs),
           "each: the control byte's RCPT answered 451 4.3.5 (policy connection closed), "
           "the next RCPT refused by spent.example's limit", diag=repr(runs))
    tap.is_(sum(d.startswith("250") for _, d in runs), 1,
            "a recipient let through, a forced reconnect, a refused RCPT: exactly 1 of 4 "
            "messages to victim.example passes recipient_domain 1/1h", diag=repr(runs))
    runs = [session(st, ["v%d@later.example" % i], ["gone@other.example"], "later")
            for i in range(3)]
    tap.ok(all(r[-1].startswith("554") for r, _ in runs if r[0].startswith("250")),
           "the RCPT after the reconnect is let through by the policy, refused after it",
           diag=repr(runs))
    tap.is_(sum(d.startswith("250") for _, d in runs), 1,
            "the same with a RCPT a later restriction refused: exactly 1 of 3 to "
            "later.example", diag=repr(runs))
    rcpts, data = session(st, ["m1@multi.example", "m2@multi.example"],
                          ["y1@spent.example", "y2@spent.example"], "multi")
    tap.ok(data.startswith("250"),
           "two recipients let through before the reconnect, two refused after: the closed "
           "connection's two are taken over with their keys (it was 451 4.3.0 on every "
           "attempt)", diag="%r %s" % (rcpts, data))
    rcpts, data = session(st, ["m3@multi.example"], None, "multi again")
    tap.ok(rcpts[0].startswith("450"), "and charged: the next message to multi.example is "
           "deferred at RCPT (1/1h)", diag="%r %s" % (rcpts, data))
    runs = [session(st, ["h%d@honest.example" % i], [], "honest") for i in range(2)]
    tap.is_([d[:3] for _, d in runs], ["250", "554"],
            "a reconnect alone: the first message passes (the recipient Postfix names is "
            "charged), the second's RCPT is deferred", diag=repr(runs))
    tap.ok(wait_for(lambda: sink_count(st, "later") == 1 and sink_count(st, "honest") == 1,
                    timeout=20), "smtp-sink got 1 message of each series")
    time.sleep(1)
    tap.is_([sink_count(st, s) for s in ("prime", "refused", "later", "multi", "honest")],
            [1, 1, 1, 1, 1], "exactly: 1 priming, 1 refused-series, 1 later-series, "
            "1 multi, 1 honest", diag="%d messages" % len(st.sink_messages()))
    log = st.read_log("policyd")
    tap.ok("control character in value; closing connection" in log,
           "the reconnect is logged", diag=log[-2000:])
    tap.ok(proc.poll() is None, "policyd-ratelimit is still running")


def test_routed_domains(st):
    sent = []
    for rcpt in ["bang.example!u1", "u2@bang.example", "u3%pct.example", "u4@pct.example"]:
        sent.append(session(st, [rcpt], None, "routed")[1][:3])
    tap.is_(sent, ["250", "554", "250", "554"],
            "bang.example!u1 and u3%pct.example are charged to the domains Postfix "
            "delivers them to: the next message to each is deferred at RCPT", diag=repr(sent))
    tap.ok(wait_for(lambda: sink_count(st, "routed") == 2, timeout=20),
           "2 such messages reached the next hop")
    def delivered():
        return sorted(set(re.findall(r"to=<(u[1-4]@[a-z.]+)>.*status=sent",
                                     st.read_log("postfix"))))
    wait_for(lambda: len(delivered()) >= 2, timeout=20)
    time.sleep(1)
    log = st.read_log("postfix")
    tap.is_(delivered(), ["u1@bang.example", "u3@pct.example"],
            "Postfix delivered them to u1@bang.example and u3@pct.example", diag=log[-2000:])


def main():
    with Stack("policyd-reconnect-refused") as st:
        tap.stack = st
        proc, port, _ = mp.start_policyd(st, "policyd", """\
listen = inet:127.0.0.1:{port}
store = memory
limit per_domain = recipient_domain rate=1/1h count=messages
""")
        st.start_sink()
        svc = "check_policy_service inet:127.0.0.1:%d" % port
        st.start_postfix(smtpd=mp.restrictions(port, extra={
            "smtpd_recipient_restrictions":
            svc + ", check_recipient_access inline:{ gone@other.example=REJECT }"}))
        test_forced_reconnect(st, proc)
        test_routed_domains(st)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
