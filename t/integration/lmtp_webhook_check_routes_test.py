#!/usr/bin/python3
"""lmtp-webhook-spool check-routes against routes the plugin never reads
or can never post (doveconf of real Dovecot 2.3; an outside tester's
findings of 2026-12-03):

  - lmtp_webhook_route and lmtp_webhook_route3 with no route2, or one
    named lmtp_webhook_route1: "N route(s) OK", and the plugin then
    tempfailed the recipients of the route it never reads. check-routes
    judges by the plugin's own rule (route.c's route_unread()).
  - URLs libcurl can never post (port 99999, host "bad_host!", an IPv6
    address without brackets) and an option given twice
    (raw_message=yes raw_message=no) passed check-routes and the plugin;
    each attempt failed "URL using bad/illegal format" until the event
    was dead-lettered 3 days later. route_parse() reads the URL with
    curl_url() now: check-routes refuses them, never quoting the URL,
    and real Dovecot tempfails the route's recipients (others: 250).
  - A route's secret_file= readable by every user: check-routes says so.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap  # noqa: E402
from mxwebhook import bill, lmtp_send, make_secret, start_spool_dovecot  # noqa: E402

SPOOL_TOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
PASSWORD = "UrlSekr1t"
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


def test_urls(st):
    cases = [
        ("bills@*.example.com https://u:%s@{1}.hook.internal:99999/api/in" % PASSWORD,
         "URL cannot be posted: port must be from 1 to 65535"),
        ("bills@example.com https://bad_host!/api/in", "URL cannot be posted: Bad hostname"),
        ("bills@example.com http://::1:8080/in",
         "URL: an IPv6 address must be in brackets"),
        ("bills@example.com http://127.0.0.1:8080/in raw_message=yes raw_message=no",
         "raw_message given twice"),
    ]
    for i, (route, words) in enumerate(cases):
        res = check_routes(conf_with(st, "url%d" % i, {"lmtp_webhook_route": route}))
        tap.ok(res.returncode == 1 and "lmtp_webhook_route: " + words in res.stderr
               and PASSWORD not in res.stdout + res.stderr,
               "check-routes: \"%s\", the URL not quoted" % words,
               diag=res.stdout + res.stderr)
    res = check_routes(conf_with(st, "url-good", {
        "lmtp_webhook_route": "bills@*.example.com https://u:pw@{1}.hook.internal:8443/in",
        "lmtp_webhook_route2": "x@example.com http://[::1]:8080/in raw_message=yes"}))
    tap.ok(res.returncode == 0 and "2 route(s) OK" in res.stdout,
           "check-routes: a capture in the host, a port, bracketed IPv6: OK",
           diag=res.stdout + res.stderr)
    world = st.path("dc", "world.secret")
    with open(world, "w") as f:
        f.write(make_secret() + "\n")
    os.chmod(world, 0o644)
    res = check_routes(conf_with(st, "world", {
        "lmtp_webhook_route": "x@example.com http://h/in secret_file=%s" % world}))
    tap.ok(res.returncode == 0 and "lmtp_webhook_route: secret_file %s is readable by every "
           "user (mode 0644)" % world in res.stderr and "whsec_" not in res.stderr,
           "check-routes: a route's secret_file 0644 is said (a warning)",
           diag=res.stdout + res.stderr)


def test_plugin_tempfails(st):
    """Real Dovecot LMTP: the route whose port is 99999 tempfails its
    recipient (its event would never be posted), another is delivered."""
    start_spool_dovecot(st, "http://u:%s@127.0.0.1:99999/in" % PASSWORD, make_secret(),
                        PLUGIN_DIR)
    bills, alice = "bills@acme.planapulse.app", "alice@mxkit.test"
    refused, _ = lmtp_send(st, [bills, alice], bill(bills, "port 99999", size=300))
    code = refused.get(bills, (0, b""))[0]
    tap.ok(400 <= code < 500 and alice not in refused,
           "Dovecot: the route's recipient tempfailed, the other delivered",
           diag=repr(refused) + st.read_log("dovecot")[-800:])
    log = st.read_log("dovecot")
    tap.ok("lmtp_webhook_route: URL cannot be posted: port must be from 1 to 65535" in log
           and PASSWORD not in log, "the log names the route and why, not its password",
           diag=log[-1200:])
    tap.ok(not os.listdir(st.path("spool", "active")), "no event spooled for it")


def main():
    with Stack("wh-check-routes") as st:
        tap.stack = st
        test_numbering(st)
        test_urls(st)
        test_plugin_tempfails(st)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
