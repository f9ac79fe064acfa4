#!/usr/bin/python3
"""GET /healthz and /readyz on metrics_listen of the four daemons on the
host (the container test probes them again in the pod): alive and ready
once started; HEAD and a query string work; anything else is a 404;
policyd-ratelimit with a Redis store and on_store_error = closed turns
not ready when Redis stops and ready again when it returns, and stays
ready with on_store_error = open; lmtp-webhook-spool is not ready while
its secret is unreadable; the probes never show up in proxyv2-shim's
connection counters (no PROXY connection is made, none is rejected)."""

import http.client
import os
import re
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack, wait_port  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402
import mxpolicy  # noqa: E402
from mxwebhook import make_secret  # noqa: E402


def get(port, path, method="GET"):
    """(status, body) of one request; (None, error) if the port refuses."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request(method, path)
        r = c.getresponse()
        body = r.read().decode(errors="replace")
        c.close()
        return r.status, body
    except OSError as e:
        return None, str(e)


def probes_ok(name, port):
    tap.is_(get(port, "/healthz"), (200, "alive\n"), "%s: GET /healthz is 200 alive" % name)
    tap.ok(wait_for(lambda: get(port, "/readyz") == (200, "ready\n"), timeout=5),
           "%s: GET /readyz is 200 ready" % name, diag=str(get(port, "/readyz")))
    tap.is_(get(port, "/readyz?verbose=1"), (200, "ready\n"),
            "%s: /readyz with a query string" % name)
    tap.is_(get(port, "/readyz", "HEAD"), (200, ""), "%s: HEAD /readyz is 200 without a body"
            % name)
    tap.is_(get(port, "/healthz", "POST")[0], 501, "%s: POST /healthz is refused (501)" % name)
    tap.is_(get(port, "/readyzz")[0], 404, "%s: /readyzz is a 404" % name)
    tap.is_(get(port, "/healthz/x")[0], 404, "%s: /healthz/x is a 404" % name)


def series(port):
    _, text = get(port, "/metrics")
    return dict(re.findall(r"^(mxkit_proxy_connections_total\{[^}]*\}) (\S+)$", text, re.M))


def test_shim(st):
    mport = st.port("shim-metrics")
    conf = st.path("etc", "shim.conf")
    with open(conf, "w") as f:
        f.write("listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=xclient trusted=127.0.0.1\n"
                "metrics_listen = inet:127.0.0.1:%d\n" % (st.port("shim"), st.port("nobody"),
                                                          mport))
    # started once its metrics port answers: no connection to the PROXY port at all
    st.start_daemon("shim", [build_path("proxyv2-shim", "proxyv2-shim"), "-f", "-c", conf],
                    port=mport)
    probes_ok("proxyv2-shim", mport)
    for _ in range(20):                 # a kubelet's worth of probes
        get(mport, "/healthz")
        get(mport, "/readyz")
    counts = series(mport)
    tap.ok(len(counts) >= 7 and all(v == "0" for v in counts.values()),
           "proxyv2-shim: 20 rounds of probes, every mxkit_proxy_connections_total series 0 "
           "(none relayed, none rejected)", diag=str(counts))
    # what a tcpSocket probe on the PROXY port would do instead: counted as a bad header
    with socket.create_connection(("127.0.0.1", st.port("shim"))):
        pass
    tap.ok(wait_for(lambda: series(mport).get(
        'mxkit_proxy_connections_total{result="bad_header"}') == "1", timeout=5),
        "proxyv2-shim: a bare connect to the PROXY port is a bad header (why the docs "
        "probe metrics_listen instead)", diag=str(series(mport)))


def test_policyd(st):
    redis = st.start_redis()
    closed, open_ = st.port("policyd-closed-metrics"), st.port("policyd-open-metrics")
    body = """listen = inet:127.0.0.1:{port}
store = redis://127.0.0.1:%d/0
on_store_error = %s
metrics_listen = inet:127.0.0.1:%d
limit per_user = sasl_username rate=30/1m count=recipients
"""
    mxpolicy.start_policyd(st, "policyd-closed", body % (redis, "closed", closed))
    mxpolicy.start_policyd(st, "policyd-open", body % (redis, "open", open_))
    probes_ok("policyd-ratelimit (closed)", closed)
    probes_ok("policyd-ratelimit (open)", open_)
    st.stop_redis()
    tap.ok(wait_for(lambda: get(closed, "/readyz")[0] == 503, timeout=5),
           "policyd (on_store_error = closed): Redis stopped -> /readyz 503")
    tap.is_(get(closed, "/readyz"),
            (503, "not ready: store unreachable and on_store_error = closed\n"),
            "policyd: the reason is in the body")
    tap.is_(get(closed, "/healthz"), (200, "alive\n"), "policyd: still alive (a restart "
            "would not bring Redis back)")
    tap.is_(get(open_, "/readyz"), (200, "ready\n"),
            "policyd (on_store_error = open): still ready without Redis")
    st.start_redis()
    tap.ok(wait_for(lambda: get(closed, "/readyz") == (200, "ready\n"), timeout=10),
           "policyd (closed): ready again once Redis is back",
           diag=str(get(closed, "/readyz")))


def test_milter(st):
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    mport = st.port("milter-metrics")
    proc, _, _ = mxdkim.start_milter(st, "milter", """\
socket = inet:{port}@127.0.0.1
key_table = {dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
dns_test_file = {dir}/etc/dns.txt
metrics_listen = inet:127.0.0.1:%d
""" % mport)
    tap.ok(wait_port(mport, proc=proc), "milter-dkim: metrics endpoint listens")
    probes_ok("milter-dkim", mport)
    proc.send_signal(1)
    tap.ok(wait_for(lambda: "configuration reloaded" in st.read_log("milter"), timeout=10),
           "milter-dkim: reloaded on SIGHUP")
    tap.is_(get(mport, "/readyz"), (200, "ready\n"), "milter-dkim: ready after the reload")


def test_spool(st):
    spool = st.path("spool")
    for sub in ("active", "dead", "tmp"):
        os.makedirs(os.path.join(spool, sub))
    secret = st.path("secret")
    with open(secret, "w") as f:
        f.write(make_secret() + "\n")
    mport = st.port("spool-metrics")
    conf = st.path("etc", "spool.conf")
    with open(conf, "w") as f:
        f.write("spool_dir = %s\nsecret_file = %s\nmetrics_listen = inet:127.0.0.1:%d\n"
                % (spool, secret, mport))
    st.start_daemon("spool", [build_path("lmtp-webhook", "lmtp-webhook-spool"),
                              "-c", conf, "-f", "run"], port=mport)
    probes_ok("lmtp-webhook-spool", mport)
    os.rename(secret, secret + ".away")
    tap.ok(wait_for(lambda: get(mport, "/readyz")
                    == (503, "not ready: webhook secret unreadable\n"), timeout=5),
           "lmtp-webhook-spool: secret file gone -> /readyz 503", diag=str(get(mport, "/readyz")))
    os.rename(secret + ".away", secret)
    tap.ok(wait_for(lambda: get(mport, "/readyz") == (200, "ready\n"), timeout=5),
           "lmtp-webhook-spool: ready again once the secret is back")


with Stack("probes") as st:
    tap.stack = st
    test_shim(st)
    test_policyd(st)
    test_milter(st)
    test_spool(st)

sys.exit(tap.done())
