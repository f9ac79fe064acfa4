#!/usr/bin/python3
"""lmtp-webhook: a '%' in a route's URL (real Dovecot 2.3: doveconf and
LMTP; an outside attacker's findings of 2026-12-03):

  - Dovecot expands %-variables in plugin settings before the plugin
    reads them. A URL percent-encoding its password ("pa%3Ass" for
    "pa:ss", as RFC 3986 wants) stopped every lmtp process, unrouted
    recipients' too, with a Fatal line quoting the URL, password and
    token; "pa%40ss" silently became another password. Written "%%",
    as the documentation now says, it reaches the receiver as meant
    (Basic auth hookuser:pa:ss, the token's %2F kept).
  - lmtp-webhook-spool check-routes reads the routes through doveconf
    -P -n and refuses a single '%' in any of them, naming the route and
    quoting none of it (no password, no token in its output).
"""

import base64
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import (Receiver, Runner, bill, lmtp_send, make_secret,  # noqa: E402
                       requests_for, start_spool_dovecot)

SPOOL_TOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
SECRET = make_secret()
RCPT = "bills@acme.planapulse.app"


def check_routes(conf):
    return subprocess.run([SPOOL_TOOL, "check-routes", conf], capture_output=True,
                          text=True, timeout=30)


def test_escaped_route(st, rx):
    conf = st.path("dovecot", "dovecot.conf")
    res = check_routes(conf)
    tap.ok(res.returncode == 0 and "2 route(s) OK" in res.stdout,
           "check-routes: the routes with '%%' are good", diag=res.stdout + res.stderr)
    subject = "percent route"
    refused, _ = lmtp_send(st, [RCPT], bill(RCPT, subject, size=300))
    got = wait_for(lambda: requests_for(rx, subject), timeout=20)
    tap.ok(refused == {} and got and len(got) == 1, "LMTP 250, one event",
           diag=repr(refused) + st.read_log("dovecot")[-800:])
    if got:
        path, headers, _, _ = got[0]
        auth = headers.get("authorization", "")
        creds = base64.b64decode(auth.split()[1]).decode() if auth.startswith("Basic ") else ""
        tap.is_(creds, "hookuser:pa:ss", "the receiver gets the password percent-decoded")
        tap.is_(path, "/ws/acme?token=T0KEN%2Fx", "and the token's %2F as written")
    tap.ok("Fatal" not in st.read_log("dovecot"), "no Fatal line in Dovecot's log")


def test_single_percent(st):
    with open(st.path("dovecot", "dovecot.conf")) as f:
        good = f.read()
    for label, bad in (("pa%3Ass: Dovecot's Fatal", good.replace("pa%%3Ass", "pa%3Ass")),
                       ("pa%40ss: expanded in silence", good.replace("pa%%3Ass", "pa%40ss")),
                       ("the second route's token", good.replace("x%%2Fy", "x%2Fy"))):
        path = st.path("dovecot", "bad.conf")
        with open(path, "w") as f:
            f.write(bad)
        res = check_routes(path)
        out = res.stdout + res.stderr
        name = "lmtp_webhook_route2" if "second" in label else "lmtp_webhook_route"
        tap.ok(res.returncode == 1 and ("%s: a single '%%'" % name) in out,
               "%s: check-routes exits 1 naming %s" % (label, name), diag=out)
        tap.ok(not any(s in out for s in ("hookuser", "pa%", "T0KEN", "SECR", "x%2F")),
               "%s: quoting neither user, password nor token" % label, diag=out)


def test_root_and_files(st):
    """Outside attacker of 2026-12-03: run as another user, doveconf skips
    the root-only include the routes are best kept in, and check-routes
    said "0 route(s) OK" of a route that stops every lmtp process; and a
    route read from a file ("<path", as Dovecot allows) was taken as its
    path, never checked."""
    conf = st.path("dovecot", "dovecot.conf")
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                          SPOOL_TOOL, "check-routes", conf], capture_output=True, text=True,
                         timeout=60)
    tap.ok(res.returncode == 1 and "must run as root" in res.stderr
           and "OK" not in res.stdout, "check-routes as nobody: refused, not 'OK'",
           diag=res.stdout + res.stderr)
    with open(conf) as f:
        good = f.read()
    route_file = st.path("dovecot", "route3")
    for label, text, want in (("a good route", "x@planapulse.app http://u:p%%40w@127.0.0.1:9/x\n",
                               0),
                              ("a single '%'", "x@planapulse.app http://u:p%40w@127.0.0.1:9/x\n",
                               1)):
        with open(route_file, "w") as f:
            f.write(text)
        os.chmod(route_file, 0o600)
        path = st.path("dovecot", "file.conf")
        with open(path, "w") as f:
            f.write(good.replace("plugin {", "plugin {\n  lmtp_webhook_route3 = <%s"
                                 % route_file, 1))
        res = check_routes(path)
        out = res.stdout + res.stderr
        tap.ok(res.returncode == want and (("3 route(s) OK" in out) if want == 0 else
                                           ("lmtp_webhook_route3: a single '%'" in out
                                            and "p%40w" not in out)),
               "a route read from a file (<path), %s: checked as the file's text (exit %d)"
               % (label, res.returncode), diag=out)


with Stack("lmtp-webhook-route-percent") as st:
    tap.stack = st
    rx = Receiver()
    url = "http://hookuser:pa%%%%3Ass@127.0.0.1:%d" % rx.port
    start_spool_dovecot(st, url + "/ws/{1}?token=T0KEN%%2Fx", SECRET, PLUGIN_DIR, more={
        "lmtp_webhook_route2": "in+*@planapulse.app %s/in/{1}?t=SECRx%%%%2Fy" % url,
    })
    runner = Runner(st)
    runner.start()
    test_escaped_route(st, rx)
    test_single_percent(st)
    test_root_and_files(st)
    runner.stop()
    rx.stop()

sys.exit(tap.done())
