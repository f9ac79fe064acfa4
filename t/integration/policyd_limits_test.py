#!/usr/bin/python3
"""policyd-ratelimit behind a real Postfix (memory store), driven by
Python's smtplib over SASL submission and XCLIENT on port 25:

  1. per_user 30/1m counting recipients: 30 pass, the 31st RCPT gets the
     templated 450 4.7.1; another user is unaffected; svc-billing's
     override lets it send more.
  2. transactions refused by Postfix or aborted before the end of DATA
     charge nothing.
  3. count=bytes charges the real END-OF-MESSAGE size (not the SIZE=
     declared at MAIL FROM); a message over the byte budget is deferred.
  4. per_ip by client_address/24 through XCLIENT, with an exemption.
  7. SIGHUP with a changed override_file applies to the next request on
     Postfix's open policy connection, which stays open.
"""

import os
import re
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

CONFIG = """\
listen = inet:127.0.0.1:{port}
store = memory
on_store_error = open
defer_reply = 450 4.7.1 Rate limit {limit} exceeded for {key}; retry in {retry_after}s
override_file = %(override)s

limit per_user   = sasl_username        rate=30/1m,500/1d  count=recipients
limit per_ip     = client_address/24/64 rate=10/1m         count=messages   unless=sasl_username
limit per_domain = sender_domain        rate=1000/1h       count=messages   dry_run=yes
limit big_sender = sasl_username        rate=300k/1h       count=bytes
exempt client_address 192.0.2.0/24 ::1
"""

DEFER_RE = r"^4\.7\.1 .*: Rate limit %s exceeded for %s; retry in [0-9]+s$"


def rcpts(n, tag):
    return ["%s%d@example.net" % (tag, i) for i in range(n)]


def accepted(results):
    return len([c for c, _ in results if c == 250])


def test_per_user(st):
    s = mp.login(st, "svc-alerts")
    res, data = mp.transaction(s, "alerts@planapulse.ai", rcpts(31, "a"))
    tap.is_(accepted(res[:30]), 30, "per_user: svc-alerts' first 30 recipients accepted")
    tap.is_(res[30][0], 450, "per_user: the 31st RCPT gets 450")
    tap.ok(re.search(DEFER_RE % ("per_user", "svc-alerts"), res[30][1]),
           "per_user: 450 carries the templated defer_reply", diag=res[30][1])
    tap.is_(data and data[0], 250, "the message goes out to its 30 recipients")
    s.quit()
    tap.ok(wait_for(lambda: "nrcpt=30 " in st.read_log("postfix")),
           "Postfix queued it with nrcpt=30")
    log = st.read_log("policyd")
    tap.ok(re.search(r"per_user: defer key=svc-alerts count=31 rate=30/1m retry_after=\d+s "
                     r"stage=RCPT queue_id=\S+ client=\S+\[127\.0\.0\.1\]", log),
           "one log line for the over-limit decision (limit, key, count, queue id, client)",
           diag=log[-1500:])

    s = mp.login(st, "svc-alerts")
    res, _ = mp.transaction(s, "alerts@planapulse.ai", rcpts(1, "again"))
    tap.is_(res[0][0], 450, "per_user: svc-alerts' next message is deferred at RCPT")
    s.quit()

    s = mp.login(st, "alice@mxkit.test")
    res, data = mp.transaction(s, "alice@mxkit.test", rcpts(30, "b"))
    tap.is_(accepted(res), 30, "another user (alice) is unaffected: 30 recipients accepted")
    s.quit()

    s = mp.login(st, "svc-billing")
    res, data = mp.transaction(s, "noreply@planapulse.ai", rcpts(120, "c"))
    tap.is_(accepted(res), 120, "svc-billing's override (5000/1h) lets 120 recipients through")
    tap.is_(data and data[0], 250, "svc-billing's message accepted")
    s.quit()


def test_not_charged(st):
    """svc-abort's transactions that never complete must cost nothing."""
    s = mp.login(st, "svc-abort")
    for i in range(5):
        s.mail("abort@planapulse.ai")
        codes = [s.rcpt(r)[0] for r in rcpts(25, "rset%d-" % i)]
        s.rset()
    tap.is_(codes, [250] * 25, "a transaction with 25 accepted recipients was reset (x5)")
    s.quit()

    # refused by Postfix: a sender the submission service rejects
    s = mp.login(st, "svc-abort")
    res, data = mp.transaction(s, "blocked@planapulse.ai", rcpts(25, "blocked"))
    tap.ok(res and all(c == 554 for c, _ in res) and data is None,
           "Postfix refuses every RCPT of a blocked sender (554)", diag=repr(res[:2]))
    # refused by Postfix at end of DATA: over message_size_limit
    res, data = mp.transaction(s, "abort@planapulse.ai", rcpts(25, "big"),
                               data=mp.message("abort@planapulse.ai", "x@example.net",
                                               "too big", 1100000))
    tap.is_(data and data[0], 552, "Postfix refuses a message over message_size_limit (552)")
    s.quit()

    # aborted in the middle of DATA: the client disconnects
    s = mp.login(st, "svc-abort")
    s.mail("abort@planapulse.ai")
    for r in rcpts(25, "cut"):
        s.rcpt(r)
    s.putcmd("data")
    code, _ = s.getreply()
    s.send(b"From: abort@planapulse.ai\r\nSubject: cut\r\n\r\npartial body\r\n")
    s.sock.shutdown(socket.SHUT_RDWR)
    s.close()
    tap.is_(code, 354, "a transaction reached DATA and was cut off mid-message")
    tap.ok(wait_for(lambda: "lost connection after DATA" in st.read_log("postfix")),
           "Postfix logged the lost connection after DATA")

    s = mp.login(st, "svc-abort")
    res, data = mp.transaction(s, "abort@planapulse.ai", rcpts(31, "after"))
    tap.is_(accepted(res[:30]), 30,
            "after 5 reset, 1 refused-sender, 1 oversized and 1 cut transaction "
            "(200 recipients), svc-abort still has all 30")
    tap.is_(res[30][0], 450, "and the 31st is still deferred: the limit is live")
    tap.is_(data and data[0], 250, "the complete transaction is accepted")
    s.quit()


def test_bytes(st):
    s = mp.login(st, "svc-bytes")
    body = mp.message("bytes@planapulse.ai", "x@example.net", "bytes 1", 200000)
    _, data = mp.transaction(s, "bytes@planapulse.ai", ["x1@example.net"], data=body,
                             mail_options=["SIZE=100"])
    tap.is_(data and data[0], 250, "bytes: a 200 kB message (declared SIZE=100) accepted")
    body2 = mp.message("bytes@planapulse.ai", "x@example.net", "bytes 2", 200000)
    _, data = mp.transaction(s, "bytes@planapulse.ai", ["x2@example.net"], data=body2,
                             mail_options=["SIZE=100"])
    tap.is_(data and data[0], 450,
            "bytes: the second 200 kB message exceeds 300k/1h and is deferred at end of DATA")
    tap.ok(data and re.search(DEFER_RE % ("big_sender", "svc-bytes"), data[1]),
           "bytes: deferral carries the templated text", diag=data and data[1])
    log = st.read_log("policyd")
    m = re.search(r"big_sender: defer key=svc-bytes count=(\d+) .*stage=END-OF-MESSAGE", log)
    size = int(m.group(1)) if m else 0
    tap.ok(200000 <= size <= len(body2) + 2000,
           "bytes: the real size (%d, not the declared 100) was counted" % size, diag=log[-800:])
    small = mp.message("bytes@planapulse.ai", "x@example.net", "bytes 3", 50000)
    _, data = mp.transaction(s, "bytes@planapulse.ai", ["x3@example.net"], data=small)
    tap.is_(data and data[0], 250, "bytes: a 50 kB message still fits the remaining budget",
            diag=repr(data))
    s.quit()


def xclient_message(st, addr, tag):
    s = mp.login(st, None, "postfix-smtp")
    code, _ = s.docmd("XCLIENT", "ADDR=%s NAME=client.example" % addr)
    if code != 220:
        return ("xclient", code)
    s.ehlo("client.example")
    res, data = mp.transaction(s, "someone@example.org", ["alice@mxkit.test"],
                               data=mp.message("someone@example.org", "alice@mxkit.test", tag))
    s.quit()
    return (res[0][0], data and data[0])


def test_per_ip(st):
    results = [xclient_message(st, "10.9.8.%d" % (i + 1), "ip%d" % i) for i in range(10)]
    tap.is_(results, [(250, 250)] * 10, "per_ip: 10 messages from 10.9.8.0/24 accepted")
    tap.is_(xclient_message(st, "10.9.8.200", "ip11")[0], 450,
            "per_ip: the 11th from the same /24 deferred at RCPT")
    tap.ok(re.search(r"per_ip: defer key=10\.9\.8\.0/24 .*client=client\.example\[10\.9\.8\.200\]",
                     st.read_log("policyd")), "per_ip: key is the /24, log names the client")
    tap.is_(xclient_message(st, "10.9.9.1", "ip-other")[0], 250,
            "per_ip: another /24 unaffected")
    results = [xclient_message(st, "192.0.2.%d" % (i + 1), "ex%d" % i)[0] for i in range(12)]
    tap.is_(results, [250] * 12, "exempt client_address 192.0.2.0/24: 12 messages accepted")


def test_sighup(st, proc, override):
    s = mp.login(st, "svc-alerts")
    s.mail("alerts@planapulse.ai")
    codes = [s.rcpt("before-hup%d@example.net" % i)[0] for i in range(31)]
    tap.is_(codes[-1], 450, "sighup: svc-alerts is over its limit before the reload")
    s.rset()
    s.mail("alerts@planapulse.ai")
    before = mp.policy_connections(st.port("policyd"))
    with open(override, "a") as f:
        f.write("override per_user svc-alerts rate=1000/1m\n")
    tap.ok(mp.hup(proc, st, "policyd", 1), "sighup: policyd logged the reload")
    code, _ = s.rcpt("after-hup@example.net")
    tap.is_(code, 250, "sighup: the next RCPT in the same SMTP session uses the new override")
    after = mp.policy_connections(st.port("policyd"))
    tap.ok(before and before <= after,
           "sighup: Postfix's policy connections stayed open (%d before)" % len(before),
           diag="before %r after %r" % (before, after))
    s.rset()
    s.quit()
    log = st.read_log("postfix")
    tap.ok("problem talking to server" not in log, "Postfix saw no policy server problem")


with Stack("policyd-limits") as st:
    tap.stack = st
    for user in ("svc-abort", "svc-bytes"):
        st.users[user] = user + "-secret"
    st.start_dovecot()
    st.start_sink()
    override = st.path("etc", "overrides")
    with open(override, "w") as f:
        f.write("# overrides, reloaded on SIGHUP\noverride per_user svc-billing "
                "rate=5000/1h,50000/1d\n")
    proc, port, conf = mp.start_policyd(st, "policyd", CONFIG % {"override": override})
    st.start_postfix(main={
        "message_size_limit": "1000000",
        "smtpd_error_sleep_time": "0",
        "smtpd_soft_error_limit": "100",
        "smtpd_hard_error_limit": "200",
        "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
    }, submission=mp.restrictions(port, rcpt_before=(
        "check_sender_access inline:{ blocked@planapulse.ai=REJECT }")),
        smtpd=mp.restrictions(port, rcpt_before="reject_unauth_destination"))
    test_per_user(st)
    test_not_charged(st)
    test_bytes(st)
    test_per_ip(st)
    test_sighup(st, proc, override)
    tap.ok(proc.poll() is None, "policyd-ratelimit is still running")

sys.exit(tap.done())
