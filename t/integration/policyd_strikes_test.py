#!/usr/bin/python3
"""policyd-ratelimit's quarantine: "at most one strike per transaction,
however many of its RCPTs are over the limit", when a client spreads one
transaction over several policy connections (helper-122, real Postfix
3.7, smtp-sink as the next hop).

Every RCPT TO with a control byte makes this daemon close the policy
connection (Postfix answers it 451 4.3.5 and opens a new one), so one
transaction of over-limit RCPTs separated by such RCPTs reached the
daemon on three connections and struck three times: with exceeded=3 one
transaction locked victim.example for every sender. The strikes of a
transaction are now kept daemon-wide per instance: one transaction is one
strike, the third transaction locks, and a stranger's mail to the domain
is refused only then. Memory and Redis stores.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap  # noqa: E402
import mxpolicy as mp  # noqa: E402
from policyd_reconnect_refused_test import Raw  # noqa: E402

CONFIG = """\
listen = inet:127.0.0.1:{port}
store = %s
limit pd = recipient_domain rate=1/1h count=recipients
quarantine q = recipient_domain when=pd exceeded=3/1h action=reject
"""


def spread(port, tag):
    """one transaction: over-limit RCPTs, each followed by one that closes
    the policy connection; the replies"""
    c = Raw(port)
    c.cmd(b"MAIL FROM:<a@client.example>")
    seq = []
    for i in range(3):
        seq.append(c.cmd(b"RCPT TO:<%s%d@victim.example>" % (tag.encode(), i)))
        seq.append(c.cmd(b"RCPT TO:<x\x01y@other.example>"))
    c.cmd(b"RSET")
    c.close()
    return seq


def stranger(port):
    c = Raw(port)
    c.cmd(b"MAIL FROM:<innocent@third.example>")
    reply = c.cmd(b"RCPT TO:<ceo@victim.example>")
    c.close()
    return reply


def run(st, label, store):
    proc, port, _ = mp.start_policyd(st, "policyd-" + label, CONFIG % store)
    st.start_postfix(name="pf-" + label, main={"smtpd_error_sleep_time": "0"},
                     smtpd=mp.restrictions(port))
    smtp = st.port("pf-%s-smtp" % label)
    c = Raw(smtp)
    c.cmd(b"MAIL FROM:<a@client.example>")
    first = c.cmd(b"RCPT TO:<first@victim.example>")
    data = c.cmd(b"DATA")
    c.s.sendall(b"Subject: spend\r\n\r\nx\r\n.\r\n")
    sent = c.reply()
    c.close()
    tap.ok(first.startswith("250") and sent.startswith("250"),
           "%s: one message spends victim.example's 1/1h" % label, diag=first + data + sent)
    seq = spread(smtp, "a")
    tap.ok([r[:3] for r in seq] == ["450", "451"] * 3,
           "%s: one transaction over three policy connections: each over-limit RCPT 450, "
           "each control-byte RCPT 451 (the connection closed)" % label, diag=repr(seq))
    seq = spread(smtp, "b")
    tap.ok(seq[0].startswith("450") and not any(r.startswith("550") for r in seq),
           "%s: a second such transaction: the second strike, not locked" % label,
           diag=repr(seq))
    seq = spread(smtp, "c")
    tap.ok(seq[0].startswith("550 5.7.1") and "locked by quarantine q" in seq[0],
           "%s: the third transaction is the third strike: locked" % label, diag=repr(seq))
    reply = stranger(smtp)
    tap.ok(reply.startswith("550 5.7.1") and "locked by quarantine q" in reply,
           "%s: and the stranger now refused by the lock" % label, diag=reply)
    log = st.read_log("policyd-" + label)
    locks = [ln for ln in log.splitlines() if "quarantine q: locked key=victim.example" in ln]
    tap.is_(len(locks), 1, "%s: one lock logged, after 3 strikes" % label, diag=log[-2000:])
    tap.ok(proc.poll() is None, "%s: policyd-ratelimit still running" % label)


def main():
    with Stack("policyd-strikes") as st:
        tap.stack = st
        st.start_sink()
        run(st, "memory", "memory")
        redis = st.start_redis()
        run(st, "redis", "redis://127.0.0.1:%d/0" % redis)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
