#!/usr/bin/python3
"""lmtp-webhook: routes an operator numbered wrong, and details after a
detail (real Dovecot 2.3 LMTP, recipient_delimiter = +-, the runner
posting to a receiver; an outside attacker's findings of 2026-12-03):

  - routes are read lmtp_webhook_route, lmtp_webhook_route2, ... up to
    the first not set. A lmtp_webhook_route4 after no route3, and one
    named lmtp_webhook_route1, were never read: their bills were saved
    with no event and no log line. A recipient such a route may be meant
    for is now tempfailed (nothing saved, nothing posted) with an error
    naming the route and the gap; other recipients are delivered, and a
    warning says which routes are not read.
  - the documentation's route "in+*@planapulse.app" takes the workspace
    from the detail; in+acme+ref42@ (a second +tag) matched neither as
    given nor cut at the first '+', and Dovecot saved it to in@'s
    mailbox with no event. The detail is now cut one part at a time
    from the right (in+acme, then in): one event, workspace acme.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import (Receiver, Runner, bill, lmtp_send, make_secret,  # noqa: E402
                       requests_for, start_spool_dovecot, verify)

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
SECRET = make_secret()
USERS = ["bills@acme.planapulse.app", "in@planapulse.app", "pay@acme.planapulse.app",
         "old@acme.planapulse.app"]


def copies(st, user, subject):
    return len([m for m in st.maildir_messages(user) if subject.encode() in m])


def test_detail_after_detail(st, rx):
    for rcpt in ("in+acme+ref42@planapulse.app", "IN+Acme+x@planapulse.app",
                 "in+acme+x-y@planapulse.app"):
        subject = "second tag " + rcpt
        refused, _ = lmtp_send(st, [rcpt], bill(rcpt, subject, size=300))
        got = wait_for(lambda: requests_for(rx, subject), timeout=20)
        tap.ok(refused == {} and got and len(got) == 1
               and got[0][0] == "/in/acme" and got[0][2]["data"]["workspace"] == "acme"
               and got[0][2]["data"]["envelope"]["rcpt_to"] == rcpt
               and verify(SECRET, got[0][1], got[0][3]) is None,
               "%s (saved to in@'s mailbox): one signed event, workspace acme, rcpt_to as "
               "given" % rcpt, diag=repr((refused, [(p, e["data"]["envelope"]) for p, _, e, _
                                                    in got or []])))
        tap.is_(copies(st, "in@planapulse.app", subject), 1, "%s: one copy saved" % rcpt)


def test_unread_routes(st, rx):
    log = lambda: st.read_log("dovecot")
    for rcpt, name, why in (
            ("pay@acme.planapulse.app", "lmtp_webhook_route4",
             "(lmtp_webhook_route3 is not set)"),
            ("old@acme.planapulse.app", "lmtp_webhook_route1", "(no 1 and no leading zero)")):
        subject = "unread route " + name
        refused, _ = lmtp_send(st, [rcpt], bill(rcpt, subject, size=300))
        tap.ok(rcpt in refused and refused[rcpt][0] // 100 == 4,
               "%s, meant for %s (never read): tempfailed (%r)" % (rcpt, name,
                                                                  refused.get(rcpt)))
        tap.ok(wait_for(lambda: "%s is never read" % name in log()
                        and why in log(), timeout=10),
               "the error names %s and why it is not read" % name, diag=log()[-1200:])
        tap.is_((copies(st, rcpt, subject), requests_for(rx, subject)), (0, []),
                "%s: nothing saved, nothing posted (Postfix keeps it)" % rcpt)
    subject = "unrouted next to unread routes"
    refused, _ = lmtp_send(st, ["alice@mxkit.test"], bill("alice@mxkit.test", subject, 300))
    tap.ok(refused == {} and copies(st, "alice@mxkit.test", subject) == 1,
           "a recipient no route could be meant for is delivered", diag=repr(refused))
    warned = [line for line in log().splitlines() if "Warning" in line and "never read" in line]
    tap.ok(any("lmtp_webhook_route4" in w for w in warned)
           and any("lmtp_webhook_route1" in w for w in warned),
           "a warning names each route that is never read", diag="\n".join(warned))
    subject = "bills next to unread routes"
    refused, _ = lmtp_send(st, ["bills+x@acme.planapulse.app"],
                           bill("bills+x@acme.planapulse.app", subject, 300))
    got = wait_for(lambda: requests_for(rx, subject), timeout=20)
    tap.ok(refused == {} and got and len(got) == 1 and got[0][0] == "/ws/acme",
           "the routes that are read still route (bills+x@acme: one event)")


with Stack("lmtp-webhook-routes") as st:
    tap.stack = st
    rx = Receiver()
    for user in USERS:
        st.users[user] = "x"
    url = "http://127.0.0.1:%d" % rx.port
    start_spool_dovecot(st, url + "/ws/{1}", SECRET, PLUGIN_DIR, more={
        "lmtp_webhook_route2": "in+*@planapulse.app %s/in/{1}" % url,
        "lmtp_webhook_route4": "pay@*.planapulse.app %s/pay/{1}" % url,
        "lmtp_webhook_route1": "old@*.planapulse.app %s/old/{1}" % url,
    }, dovecot_conf="recipient_delimiter = +-\n")
    runner = Runner(st)
    runner.start()
    test_detail_after_detail(st, rx)
    test_unread_routes(st, rx)
    runner.stop()
    rx.stop()
    tap.ok("Panic" not in st.read_log("dovecot") and "Fatal" not in st.read_log("dovecot"),
           "no panic or fatal error in Dovecot's log")

sys.exit(tap.done())
