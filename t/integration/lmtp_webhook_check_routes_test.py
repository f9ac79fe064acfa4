#!/usr/bin/python3
"""lmtp-webhook-spool check-routes against routes the plugin never reads
or can never post (doveconf of real Dovecot 2.3; an outside tester's
findings of 2026-12-03):

  - lmtp_webhook_route and lmtp_webhook_route3 with no route2, or one
    named lmtp_webhook_route1: "N route(s) OK", and the plugin then
    tempfailed the recipients of the route it never reads. check-routes
    judges by the plugin's own rule (route.c's route_unread()).
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap  # noqa: E402

SPOOL_TOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
GAP = ("lmtp_webhook_route3 is never read: routes are lmtp_webhook_route, "
       "lmtp_webhook_route2, lmtp_webhook_route3, ... numbered without a gap "
       "(lmtp_webhook_route2 is not set)")


def conf_with(st, name, routes):
    """A dovecot.conf doveconf reads, with routes ({setting: value}) in plugin {}."""
    os.makedirs(st.path("dc", "run"), exist_ok=True)
    path = st.path("dc", name + ".conf")
    with open(path, "w") as f:
        f.write("protocols =\nssl = no\nbase_dir = %s\nstate_dir = %s\nplugin {\n"
                % (st.path("dc", "run"), st.path("dc", "state")))
        for k, v in routes.items():
            f.write("  %s = %s\n" % (k, v))
        f.write("}\n")
    return path


def check_routes(conf):
    return subprocess.run([SPOOL_TOOL, "check-routes", conf], capture_output=True,
                          text=True, timeout=30)


def test_numbering(st):
    good = "a@example.com http://127.0.0.1:8080/in"
    cases = [
        ("gap", {"lmtp_webhook_route": good, "lmtp_webhook_route3": good}, [GAP]),
        ("route1", {"lmtp_webhook_route1": good},
         ["lmtp_webhook_route1 is never read", "(no 1 and no leading zero)"]),
        ("route2-alone", {"lmtp_webhook_route2": good},
         ["lmtp_webhook_route2 is never read", "(lmtp_webhook_route is not set)"]),
        ("leading-zero", {"lmtp_webhook_route": good, "lmtp_webhook_route02": good},
         ["lmtp_webhook_route02 is never read"]),
    ]
    for name, routes, words in cases:
        res = check_routes(conf_with(st, name, routes))
        tap.ok(res.returncode == 1 and all(w in res.stderr for w in words)
               and "OK" not in res.stdout,
               "check-routes: %s is refused as the plugin reads it" % " + ".join(routes),
               diag=res.stdout + res.stderr)
    res = check_routes(conf_with(st, "nogap", {"lmtp_webhook_route": good,
                                               "lmtp_webhook_route2": good,
                                               "lmtp_webhook_route3": good}))
    tap.ok(res.returncode == 0 and "3 route(s) OK" in res.stdout,
           "check-routes: route, route2, route3: OK", diag=res.stdout + res.stderr)


def main():
    with Stack("wh-check-routes") as st:
        tap.stack = st
        test_numbering(st)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
