#!/usr/bin/python3
"""Prometheus endpoints (metrics_listen) of policyd-ratelimit, proxyv2-shim,
milter-dkim and lmtp-webhook-spool: each is scraped while a known amount
of traffic goes through the daemon, the counters must say exactly that,
and Prometheus's own promtool must accept every scrape
(`promtool check metrics`) and contrib/prometheus/alerts.yml
(`promtool check rules`, `promtool test rules`)."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack, wait_port  # noqa: E402
from mxtest import build_path, run, src_path, tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402
import mxpolicy  # noqa: E402
from mxwebhook import Receiver, make_secret  # noqa: E402


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return r.headers.get("Content-Type", ""), r.read().decode()


def value(text, series):
    """The sample value of one series line, e.g. 'x_total{a="b"}'; None if absent."""
    m = re.search(r"^%s (\S+)$" % re.escape(series), text, re.M)
    return float(m.group(1)) if m else None


def promtool_ok(text, name):
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                         text=True)
    tap.ok(res.returncode == 0, "%s: promtool check metrics accepts the scrape" % name,
           diag=res.stdout + res.stderr)


def test_policyd(st):
    mport = st.port("policyd-metrics")
    proc, port, _ = mxpolicy.start_policyd(st, "policyd", """\
listen = inet:127.0.0.1:{port}
metrics_listen = inet:127.0.0.1:%d
limit per_user = sasl_username rate=30/1m count=messages
""" % mport)
    tap.ok(wait_port(mport, proc=proc), "policyd-ratelimit: metrics endpoint listens")
    with socket.create_connection(("127.0.0.1", port)) as s:
        f = s.makefile("rwb")
        replies = []
        for i in range(31):     # RCPT, DATA, END-OF-MESSAGE as Postfix sends them;
            base = {"request": "smtpd_access_policy", "sasl_username": "svc-alerts",
                    "client_address": "192.0.2.9", "instance": "m%d" % i,
                    "recipient": "ops@example.net", "sender": "alerts@planapulse.ai"}
            replies.append(mxpolicy.policy_request(f, dict(base, protocol_state="RCPT")))
            if i < 30:          # 30 messages pass, the 31st is deferred at RCPT
                replies.append(mxpolicy.policy_request(
                    f, dict(base, protocol_state="DATA", recipient_count="1")))
                replies.append(mxpolicy.policy_request(
                    f, dict(base, protocol_state="END-OF-MESSAGE", recipient_count="1",
                            size="1000")))
    actions = [r[0] for r in replies if r]
    tap.is_((actions.count("action=DUNNO"), len(actions)), (90, 91),
            "policyd: 91 requests, 90 answered DUNNO", diag=str(actions[-3:]))
    ctype, text = scrape(mport)
    tap.ok(ctype.startswith("text/plain; version=0.0.4"), "policyd: Prometheus content type")
    tap.is_(value(text, 'mxkit_policyd_decisions_total{action="dunno"}'), 90.0,
            "policyd: decisions_total{action=dunno} = 90")
    tap.is_(value(text, 'mxkit_policyd_decisions_total{action="defer"}'), 1.0,
            "policyd: decisions_total{action=defer} = 1")
    tap.is_(value(text, 'mxkit_policyd_limit_exceeded_total{limit="per_user",action="defer"}'),
            1.0, "policyd: limit_exceeded_total{limit=per_user,action=defer} = 1")
    tap.is_(value(text, "mxkit_policyd_request_duration_seconds_count"), 91.0,
            "policyd: 91 latencies in the histogram")
    tap.is_(value(text, "mxkit_policyd_store_errors_total"), 0.0, "policyd: no store errors")
    promtool_ok(text, "policyd")
    with open(st.path("etc", "policyd.conf"), "a") as f:
        f.write("limit broken = sasl_username rate=lots\n")
    proc.send_signal(1)
    wait_for(lambda: "reload of" in st.read_log("policyd"), timeout=10)
    _, text = scrape(mport)
    tap.is_(value(text, 'mxkit_config_reloads_total{result="failed"}'), 1.0,
            "policyd: a refused reload is counted")


def test_shim(st):
    mport = st.port("shim-metrics")
    backend = st.port("echo")
    echo = st.start_daemon("echo", ["socat", "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr"
                                    % backend, "EXEC:cat"], port=backend)
    conf = st.path("etc", "shim.conf")
    with open(conf, "w") as f:
        f.write("listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=proxy-v1 "
                "trusted=127.0.0.0/8\n" % (st.port("shim"), backend))
        f.write("listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=proxy-v1 "
                "trusted=10.0.0.0/8\n" % (st.port("shim-untrusted"), backend))
        f.write("metrics_listen = inet:127.0.0.1:%d\nworkers = 2\n" % mport)
    proc = st.start_daemon("shim", [build_path("proxyv2-shim", "proxyv2-shim"), "-f", "-c",
                                    conf], port=st.port("shim"))
    tap.ok(wait_port(mport, proc=proc), "proxyv2-shim: metrics endpoint listens")
    # the launcher's readiness probe (connect, close) is a bad header too:
    # let it be counted before taking the baseline
    wait_for(lambda: value(scrape(mport)[1],
                           'mxkit_proxy_connections_total{result="bad_header"}'), timeout=5)
    before = scrape(mport)[1]
    payload = b"hello through the shim\n"
    for i in range(3):
        with socket.create_connection(("127.0.0.1", st.port("shim"))) as s:
            s.sendall(b"PROXY TCP4 192.0.2.%d 127.0.0.1 4000%d 25\r\n" % (i + 1, i) + payload)
            got = b""
            while not got.endswith(payload):
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
    for i in range(2):
        with socket.create_connection(("127.0.0.1", st.port("shim-untrusted"))) as s:
            try:
                s.sendall(b"PROXY TCP4 192.0.2.1 127.0.0.1 40000 25\r\n")
                s.recv(10)
            except OSError:
                pass            # closed on us: that is the point
    with socket.create_connection(("127.0.0.1", st.port("shim"))) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            s.recv(10)
        except OSError:
            pass

    def delta(text, series):
        return (value(text, series) or 0) - (value(before, series) or 0)

    ok = wait_for(lambda: delta(scrape(mport)[1],
                                'mxkit_proxy_connections_total{result="bad_header"}') == 1,
                  timeout=10)
    _, text = scrape(mport)
    tap.ok(ok, "shim: one bad header counted")
    tap.is_(delta(text, 'mxkit_proxy_connections_total{result="relayed"}'), 3.0,
            "shim: 3 connections relayed")
    tap.is_(delta(text, 'mxkit_proxy_connections_total{result="untrusted"}'), 2.0,
            "shim: 2 untrusted connections refused")
    up = delta(text, 'mxkit_proxy_bytes_total{direction="client_to_backend"}')
    down = delta(text, 'mxkit_proxy_bytes_total{direction="backend_to_client"}')
    tap.is_(up, 3.0 * len(payload), "shim: bytes client->backend = 3 payloads")
    tap.ok(down >= 3 * len(payload), "shim: bytes backend->client counted (%s)" % down)
    tap.is_(delta(text, "mxkit_proxy_handoff_seconds_count"), 3.0,
            "shim: 3 hand-off times (the relayed connections)")
    promtool_ok(text, "proxyv2-shim")
    proc.send_signal(1)
    tap.ok(wait_for(lambda: value(scrape(mport)[1],
                                  'mxkit_config_reloads_total{result="ok"}') == 1.0, timeout=10),
           "shim: a SIGHUP reload is counted as ok")
    del echo


def test_milter(st):
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.keygen(st, dns, "planapulse.ai", "rsa2026", "rsa", 2048)
    mxdkim.keygen(st, dns, "planapulse.ai", "ed2026", "ed25519")
    with open(st.path("etc", "key.table"), "w") as f:
        f.write("rsa planapulse.ai:rsa2026:%s/keys/rsa2026.private\n"
                "ed  %%:ed2026:%s/keys/ed2026.private\n" % (st.dir, st.dir))
    with open(st.path("etc", "signing.table"), "w") as f:
        f.write("*@planapulse.ai rsa,ed\n")
    with open(st.path("etc", "sender_binding"), "w") as f:
        f.write("svc-billing  *@planapulse.ai\n")
    mport = st.port("milter-metrics")
    proc, port, _ = mxdkim.start_milter(st, "milter", """\
socket = inet:{port}@127.0.0.1
key_table = {dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
sender_binding = {dir}/etc/sender_binding
dns_test_file = {dir}/etc/dns.txt
metrics_listen = inet:127.0.0.1:%d
""" % mport)
    tap.ok(wait_port(mport, proc=proc), "milter-dkim: metrics endpoint listens")
    load = build_path("t", "bench", "milter_load")
    spec = "inet:%d@127.0.0.1" % port
    signed = run([load, "-s", spec, "-c", "1", "-n", "5", "-a", "svc-billing",
                  "-A", "192.0.2.7", "-f", "noreply@planapulse.ai"])
    bad = run([load, "-s", spec, "-c", "1", "-n", "1", "-a", "svc-billing",
               "-A", "192.0.2.7", "-f", "staff@plana.solutions"])
    inbound = run([load, "-s", spec, "-c", "1", "-n", "2", "-A", "192.0.2.7",
                   "-f", "someone@example.org"])
    tap.ok("signed=5" in signed.stdout and "rejected=1" in bad.stdout
           and "messages=2" in inbound.stdout, "milter-dkim: 5 signed, 1 refused, 2 verified",
           diag=signed.stdout + bad.stdout + inbound.stdout + inbound.stderr)
    _, text = scrape(mport)
    tap.is_(value(text, 'mxkit_dkim_signatures_total{result="signed"}'), 10.0,
            "milter-dkim: 10 signatures (5 messages x RSA + Ed25519)")
    tap.is_(value(text, 'mxkit_dkim_signatures_total{result="failed"}'), 0.0,
            "milter-dkim: no signing failures")
    tap.is_(value(text, "mxkit_dkim_sender_binding_violations_total"), 1.0,
            "milter-dkim: 1 sender_binding violation")
    tap.is_(value(text, 'mxkit_dkim_verify_results_total{result="none"}'), 2.0,
            "milter-dkim: 2 unsigned inbound messages verified as dkim=none")
    tap.is_(value(text, "mxkit_dkim_eom_duration_seconds_count"), 7.0,
            "milter-dkim: 7 end-of-message timings (5 signed, 2 verified; the refused "
            "message ended at end-of-headers)")
    promtool_ok(text, "milter-dkim")


def write_event(spool, event_id, url):
    body = json.dumps({"type": "message.received", "data": {"id": event_id}}).encode()
    head = json.dumps({"id": event_id, "url": url, "created": int(time.time()), "attempts": 1,
                       "next_attempt": 0, "last_error": None, "body_length": len(body)})
    with open(os.path.join(spool, "active", event_id), "wb") as f:
        f.write(head.encode() + b"\n" + body)


def test_spool(st):
    good, bad = Receiver(), Receiver()
    bad.default = 500
    spool = st.path("spool")
    for sub in ("active", "dead", "tmp"):
        os.makedirs(os.path.join(spool, sub))
    with open(st.path("secret"), "w") as f:
        f.write(make_secret() + "\n")
    write_event(spool, "msg_good1", "http://127.0.0.1:%d/x" % good.port)
    write_event(spool, "msg_good2", "http://127.0.0.1:%d/x" % good.port)
    write_event(spool, "msg_bad", "http://127.0.0.1:%d/x" % bad.port)
    mport = st.port("spool-metrics")
    conf = st.path("etc", "spool.conf")
    with open(conf, "w") as f:
        f.write("spool_dir = %s\nsecret_file = %s\nmetrics_listen = inet:127.0.0.1:%d\n"
                % (spool, st.path("secret"), mport))
    proc = st.start_daemon("spool", [build_path("lmtp-webhook", "lmtp-webhook-spool"),
                                     "-c", conf, "-f", "run"], port=mport)
    ok = wait_for(lambda: value(scrape(mport)[1],
                                'mxkit_webhook_events_total{outcome="failed"}') == 1.0,
                  timeout=15)
    _, text = scrape(mport)
    tap.ok(ok, "lmtp-webhook-spool: the 500 counted as failed")
    tap.is_(value(text, 'mxkit_webhook_events_total{outcome="delivered"}'), 2.0,
            "lmtp-webhook-spool: 2 delivered")
    tap.is_(value(text, "mxkit_webhook_spool_depth"), 1.0, "lmtp-webhook-spool: depth 1")
    tap.is_(value(text, "mxkit_webhook_attempt_duration_seconds_count"), 3.0,
            "lmtp-webhook-spool: 3 attempt durations")
    age = value(text, "mxkit_webhook_spool_oldest_seconds")
    tap.ok(age is not None and 0 <= age < 60, "lmtp-webhook-spool: oldest event age (%s s)" % age)
    promtool_ok(text, "lmtp-webhook-spool")
    proc.terminate()
    good.stop()
    bad.stop()


def test_rules():
    rules = src_path("contrib", "prometheus", "alerts.yml")
    res = run(["promtool", "check", "rules", rules])
    tap.ok(res.returncode == 0 and "SUCCESS" in res.stdout,
           "promtool check rules contrib/prometheus/alerts.yml", diag=res.stdout + res.stderr)
    res = run(["promtool", "test", "rules", src_path("contrib", "prometheus", "alerts_test.yml")])
    tap.ok(res.returncode == 0, "promtool test rules: each alert fires on its series",
           diag=res.stdout + res.stderr)


with Stack("metrics") as st:
    tap.stack = st
    test_policyd(st)
    test_shim(st)
    test_milter(st)
    test_spool(st)
    test_rules()

sys.exit(tap.done())
