#!/usr/bin/python3
"""-t against listening addresses that clash across address families
(helper-65 F7; common/daemon_config.c), for two daemons:

  1. milter-dkim binds its socket without IPV6_V6ONLY: socket =
     inet6:P@:: (with net.ipv6.bindv6only = 0, the Linux default) or
     inet6:P@::ffff:127.0.0.1 next to metrics_listen = inet:127.0.0.1:P
     -- -t said OK and the start died "Address already in use"; now -t
     and the start refuse it naming both settings. inet6:P@::1 next to
     127.0.0.1:P is fine: it starts and both ports answer. So are
     socket = inet:P (no @HOST: every address) and inet:smtp@127.0.0.1
     (a service name) next to 127.0.0.1:P, 127.0.0.1:25 (helper-72 F10).
  2. policyd-ratelimit (its listeners set IPV6_V6ONLY): listen =
     inet6:[::ffff:127.0.0.1]:P next to metrics_listen 127.0.0.1:P is
     refused the same way; listen = inet6:[::]:P next to 127.0.0.1:P is
     fine (an IPv6-only wildcard holds no IPv4): it starts, both answer.
  3. An IPv4-mapped listener alone (policyd's listen, milter-dkim's
     socket) is its IPv4 address: -t said OK and policyd's start died
     "Invalid argument" (IPV6_V6ONLY refuses a mapped address).
"""

import os
import socket
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402
from mxdaemons import POLICYD, write  # noqa: E402


def run(argv, timeout):
    """(exit code, output); None for a daemon still running at timeout."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        p.terminate()
        out, _ = p.communicate(timeout=20)
        return None, out


def refused(binary, conf, words, label):
    rc, out = run([binary, "-t", "-c", conf], 60)
    tap.ok(rc == 1 and all(w in out for w in words), "%s: -t refuses it" % label, diag=out)
    rc, out = run([binary, "-f", "-c", conf], 10)
    tap.ok(rc not in (None, 0) and all(w in out for w in words)
           and "Address already in use" not in out,
           "%s: the start refuses it the same way (not 'Address already in use')" % label,
           diag="exit %s: %s" % (rc, out[-800:]))


def connects(family, host, port):
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect((host, port))
        return True
    except OSError:
        return False


def serves(binary, conf, family, host, port, label, metrics_port=None):
    """-t accepts it; started, the listener and metrics_listen (on the
    listener's port unless given) both answer."""
    rc, out = run([binary, "-t", "-c", conf], 60)
    tap.is_(rc, 0, "%s: -t accepts it" % label, diag=out)
    p = subprocess.Popen([binary, "-f", "-c", conf], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        up = wait_for(lambda: connects(family, host, port), timeout=15)
        metrics = False
        if up:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % (metrics_port or port),
                                        timeout=5) as r:
                metrics = r.status == 200
        tap.ok(up and metrics and p.poll() is None,
               "%s: started, the listener and metrics_listen both answer" % label)
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=20)
    tap.ok("Address already in use" not in out, "%s: no bind failure" % label, diag=out[-600:])


with Stack("dual-stack-clash") as st:
    tap.stack = st
    with open("/proc/sys/net/ipv6/bindv6only") as f:
        v6only = f.read().strip() != "0"
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.keygen(st, dns, "planapulse.ai", "ed2026", "ed25519")
    write(st, "key.table", "ed planapulse.ai:ed2026:%s/keys/ed2026.private\n" % st.dir)
    write(st, "signing.table", "*@planapulse.ai ed\n")
    milter_base = ("key_table = %s\nsigning_table = refile:%s\ndns_test_file = %s\n"
                   % (st.path("etc", "key.table"), st.path("etc", "signing.table"),
                      st.path("etc", "dns.txt")))

    p = st.port("milter-wild")
    conf = write(st, "milter-wild.conf", "socket = inet6:%d@::\nmetrics_listen = "
                 "inet:127.0.0.1:%d\n" % (p, p) + milter_base)
    if v6only:
        for what in ("-t", "the start"):
            tap.skip("milter-dkim: socket inet6:P@:: and metrics_listen 127.0.0.1:P: %s" % what,
                     "net.ipv6.bindv6only is 1 here: a dual-stack :: holds no IPv4")
    else:
        refused(mxdkim.MILTER, conf, ["metrics_listen inet:127.0.0.1:%d: the same address as "
                                      "socket inet6:[::]:%d" % (p, p), "only one can listen",
                                      "bindv6only"],
                "milter-dkim: socket inet6:P@:: and metrics_listen 127.0.0.1:P")
    # helper-72 F10: no @HOST (libmilter: every address), a service name
    p = st.port("milter-nohost")
    conf = write(st, "milter-nohost.conf", "socket = inet:%d\nmetrics_listen = "
                 "inet:127.0.0.1:%d\n" % (p, p) + milter_base)
    refused(mxdkim.MILTER, conf, ["metrics_listen inet:127.0.0.1:%d: the same address as "
                                  "socket inet:0.0.0.0:%d (line 1)" % (p, p), "only one can listen"],
            "milter-dkim: socket inet:P (every address) and metrics_listen 127.0.0.1:P")
    conf = write(st, "milter-service.conf", "socket = inet:smtp@127.0.0.1\nmetrics_listen = "
                 "inet:127.0.0.1:25\n" + milter_base)
    refused(mxdkim.MILTER, conf, ["metrics_listen inet:127.0.0.1:25: the same address as "
                                  "socket inet:127.0.0.1:25 (line 1)", "only one can listen"],
            "milter-dkim: socket inet:smtp@127.0.0.1 and metrics_listen 127.0.0.1:25")
    p = st.port("milter-mapped")
    conf = write(st, "milter-mapped.conf", "socket = inet6:%d@::ffff:127.0.0.1\n"
                 "metrics_listen = inet:127.0.0.1:%d\n" % (p, p) + milter_base)
    refused(mxdkim.MILTER, conf, ["metrics_listen inet:127.0.0.1:%d: the same address as "
                                  "socket" % p, "only one can listen"],
            "milter-dkim: socket inet6:P@::ffff:127.0.0.1 and metrics_listen 127.0.0.1:P")
    p = st.port("milter-v6")
    conf = write(st, "milter-v6.conf", "socket = inet6:%d@::1\nmetrics_listen = "
                 "inet:127.0.0.1:%d\n" % (p, p) + milter_base)
    serves(mxdkim.MILTER, conf, socket.AF_INET6, "::1", p,
           "milter-dkim: socket inet6:P@::1 and metrics_listen 127.0.0.1:P")

    p = st.port("policyd-mapped")
    conf = write(st, "policyd-mapped.conf", "listen = inet6:[::ffff:127.0.0.1]:%d\n"
                 "metrics_listen = inet:127.0.0.1:%d\n" % (p, p))
    refused(POLICYD, conf, ["metrics_listen inet:127.0.0.1:%d: the same address as listen "
                            "inet6:[::ffff:127.0.0.1]:%d" % (p, p), "only one can listen"],
            "policyd-ratelimit: listen [::ffff:127.0.0.1]:P and metrics_listen 127.0.0.1:P")
    # alone, an IPv4-mapped listener is its IPv4 address: -t said OK and
    # the start died "Invalid argument" (an IPV6_V6ONLY socket refuses it)
    p, m = st.port("policyd-mapped-alone"), st.port("policyd-mapped-metrics")
    conf = write(st, "policyd-mapped-alone.conf", "listen = inet6:[::ffff:127.0.0.1]:%d\n"
                 "metrics_listen = inet:127.0.0.1:%d\n" % (p, m))
    serves(POLICYD, conf, socket.AF_INET, "127.0.0.1", p,
           "policyd-ratelimit: listen [::ffff:127.0.0.1]:P alone", metrics_port=m)
    p, m = st.port("milter-mapped-alone"), st.port("milter-mapped-metrics")
    conf = write(st, "milter-mapped-alone.conf", "socket = inet6:%d@::ffff:127.0.0.1\n"
                 "metrics_listen = inet:127.0.0.1:%d\n" % (p, m) + milter_base)
    serves(mxdkim.MILTER, conf, socket.AF_INET, "127.0.0.1", p,
           "milter-dkim: socket inet6:P@::ffff:127.0.0.1 alone", metrics_port=m)
    p = st.port("policyd-wild")
    conf = write(st, "policyd-wild.conf", "listen = inet6:[::]:%d\nmetrics_listen = "
                 "inet:127.0.0.1:%d\n" % (p, p))
    serves(POLICYD, conf, socket.AF_INET6, "::1", p,
           "policyd-ratelimit: listen [::]:P (IPV6_V6ONLY) and metrics_listen 127.0.0.1:P")

sys.exit(tap.done())
