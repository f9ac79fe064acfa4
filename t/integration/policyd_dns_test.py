#!/usr/bin/python3
"""policyd-ratelimit with Redis and Sentinel given by host name (issue 18):
the names are looked up with evdns on the daemon's loop, through a real
knotd named by resolv_conf, never with a blocking getaddrinfo().

  - a Kubernetes-style short name ("redis", found through resolv.conf's
    search list with ndots:5) resolves: the limit is enforced in a real
    redis-server;
  - the name moves (second redis-server on 127.0.0.2, same port) and the
    old server is killed: the daemon looks the name up again and
    follows, without a restart; no request waits meanwhile;
  - a DNS server that never answers (a UDP socket that reads and drops):
    every request is answered per on_store_error within the deadline,
    one "cannot resolve" line is logged, not one per retry;
  - NXDOMAIN: a clear error, the same fast answers; the name then starts
    resolving and the daemon connects without a restart;
  - a name in hosts_file (with the silent DNS server as resolver: the
    file alone answers);
  - NODATA and REFUSED: the same; a resolv_conf or hosts_file the
    daemon's user cannot read: refused by -t and the start (checked as
    that user); a reload changing resolv_conf: "needs a restart";
  - a name whose first address is dead (the next one is used) and an
    AAAA-only name (redis-server on ::1);
  - Sentinels given by name, and a master Sentinel announces by name;
    +switch-master (from a stand-in Sentinel) to another name: followed;
  - -t: a name that does not resolve is fine, a malformed one, a missing
    resolv_conf or hosts_file, a resolv_conf without nameserver are not.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mxdns  # noqa: E402
from mxdns import Knot  # noqa: E402
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

CONFIG = """\
listen = inet:127.0.0.1:{port}
store = %(store)s
on_store_error = closed
deadline = 100ms
workers = 2
resolv_conf = %(resolv)s
limit per_user = sasl_username rate=3/1h
%(extra)s
"""
DEADLINE = 0.100
SLACK = 0.150           # scheduling on a loaded 2-core machine
ZONE = "svc.mxkit.test"
MASTER = "mxmaster"


def request(user, instance):
    attrs = {"request": "smtpd_access_policy", "protocol_state": "END-OF-MESSAGE",
             "instance": instance, "client_address": "192.0.2.1",
             "recipient_count": "1", "size": "100", "sasl_username": user}
    return b"".join(b"%s=%s\n" % (k.encode(), v.encode()) for k, v in attrs.items()) + b"\n"


def ask(port, user, count, tag, gap=0.0):
    """count requests on one connection: (list of actions, worst seconds)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    buf, out, worst = b"", [], 0.0
    for i in range(count):
        t0 = time.monotonic()
        sock.sendall(request(user, "%s%d" % (tag, i)))
        while b"\n\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        worst = max(worst, time.monotonic() - t0)
        reply, _, buf = buf.partition(b"\n\n")
        out.append(reply.decode(errors="replace"))
        if gap:
            time.sleep(gap)
    sock.close()
    return out, worst


def settled(port, tries=[0]):
    """Every worker connected: the state line is logged once for all of
    them, so probe: 6 new connections (the kernel spreads them over the
    workers), one request each for a fresh user, all answered DUNNO."""
    def probe():
        tries[0] += 1
        return all(ask(port, "probe-%d-%d" % (tries[0], k), 1, "p")[0] == ["action=DUNNO"]
                   for k in range(6))
    return wait_for(probe, timeout=10, interval=0.2)


def redis_server(st, name, host, port):
    os.makedirs(st.path(name), exist_ok=True)
    proc = st._spawn(name, ["redis-server", "--port", str(port), "--bind", host, "--save", "",
                            "--appendonly", "no", "--dir", st.path(name), "--daemonize", "no",
                            "--protected-mode", "no"], st.path("log", name + ".log"))
    st._ready(name, port, proc, host=host)
    return proc


def redis_cli(host, port, *args):
    return subprocess.run(["redis-cli", "-h", host, "-p", str(port)] + list(args),
                          capture_output=True, text=True, timeout=10).stdout.strip()


class BlackHole(threading.Thread):
    """A DNS "server" that reads every query and never answers."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0

    def run(self):
        while True:
            try:
                self.sock.recvfrom(4096)
                self.queries += 1
            except OSError:
                return


def write(st, name, text):
    path = st.path("etc", name)
    with open(path, "w") as f:
        f.write(text)
    return path


def start(st, name, store, resolv, extra=""):
    proc, port, _ = mp.start_policyd(st, name, CONFIG % {"store": store, "resolv": resolv,
                                                         "extra": extra})
    return proc, port


def all_closed(replies):
    return all(r.startswith("action=451 4.3.0") for r in replies)


def test_check(st, knot_resolv):
    """-t: names need not resolve; broken names and files are refused."""
    def t(body):
        path = mp.write_config(st, "check", body)
        res = subprocess.run([mp.POLICYD, "-t", "-c", path], capture_output=True, text=True,
                             timeout=30)
        return res.returncode, res.stdout + res.stderr

    base = "store = %s\nresolv_conf = %s\n"
    rc, out = t(base % ("redis://no-such-name.invalid:6379/0", knot_resolv))
    tap.is_(rc, 0, "-t: a store name that does not resolve is accepted", diag=out)
    rc, out = t(base % ("redis-sentinel://s1.invalid,s2.invalid:26380/m", knot_resolv))
    tap.is_(rc, 0, "-t: Sentinel names that do not resolve are accepted", diag=out)
    for store, why in (("redis://bad..name:6379/0", "empty label"),
                       ("redis://bad_na!me/0", "a '!'"),
                       ("redis://" + "a" * 64 + ".test/0", "a 64-byte label"),
                       ("redis://[not-v6]:6379/0", "brackets without an IPv6 address"),
                       ("redis-sentinel://ok.test,bad..x/m", "a Sentinel with an empty label")):
        rc, out = t(base % (store, knot_resolv))
        tap.ok(rc == 1 and "host must be a host name" in out,
               "-t refuses a host with %s" % why, diag=out)
    rc, out = t(base % ("redis://[::1]:6379/0", knot_resolv) + "hosts_file = /nonexistent/h\n")
    tap.ok(rc == 1 and "hosts_file: cannot open /nonexistent/h" in out,
           "-t: a missing hosts_file is refused", diag=out)
    rc, out = t(base % ("redis://r.test/0", "/nonexistent/resolv.conf"))
    tap.ok(rc == 1 and "resolv_conf: cannot open /nonexistent/resolv.conf" in out,
           "-t: a missing resolv_conf is refused", diag=out)
    empty = write(st, "empty-resolv.conf", "search svc.mxkit.test\n")
    rc, out = t(base % ("redis://r.test/0", empty))
    tap.ok(rc == 1 and "names no usable nameserver" in out,
           "-t: a resolv_conf without nameserver is refused", diag=out)
    rc, out = t(base % ("redis://r.test/0", "etc/resolv.conf"))
    tap.ok(rc == 1 and "absolute path" in out, "-t: a relative resolv_conf is refused",
           diag=out)


def test_resolves_and_moves(st, knot, knot_resolv, rport):
    name = "pd-name"
    proc, port = start(st, name, "redis://redis:%d/0" % rport, knot_resolv)
    tap.ok(wait_for(lambda: "redis: connected (redis is 127.0.0.1)" in st.read_log(name),
                    timeout=10),
           "the short name \"redis\" resolves through the search list (ndots:5)",
           diag=st.read_log(name)[-600:])
    tap.ok(settled(port), "every worker connected")
    out, worst = ask(port, "svc-a", 4, "a")
    tap.is_([r.split()[0] for r in out], ["action=DUNNO"] * 3 + ["action=450"],
            "the limit (3/1h) is enforced through the name's redis-server", diag=repr(out))
    tap.is_(redis_cli("127.0.0.1", rport, "EXISTS", "mxrl:{per_user:svc-a}:3600000"), "1",
            "the key is in the first redis-server (127.0.0.1)")
    # the Service moves: a second redis-server on 127.0.0.2, same port
    redis_server(st, "redis2", "127.0.0.2", rport)
    knot.set_zone(ZONE, ["redis A 127.0.0.2"])
    os.kill(st.procs["redis1"].pid, signal.SIGKILL)
    st.procs.pop("redis1").wait()
    out, worst = ask(port, "svc-move", 20, "m", gap=0.05)
    tap.ok(worst < DEADLINE + SLACK, "during the move no request waits: slowest %.0f ms "
           "(deadline 100 ms)" % (worst * 1000))
    tap.ok(wait_for(lambda: "redis: connected (redis is 127.0.0.2)" in st.read_log(name),
                    timeout=10),
           "after the old server died the daemon looked the name up again and follows it",
           diag=st.read_log(name)[-800:])
    tap.ok(settled(port), "every worker connected")
    out, _ = ask(port, "svc-b", 4, "b")
    tap.is_([r.split()[0] for r in out], ["action=DUNNO"] * 3 + ["action=450"],
            "the limit is enforced on the new address", diag=repr(out))
    tap.is_(redis_cli("127.0.0.2", rport, "EXISTS", "mxrl:{per_user:svc-b}:3600000"), "1",
            "the key is in the second redis-server (127.0.0.2)")
    tap.ok(proc.poll() is None, "the daemon was not restarted")


def test_silent_dns(st, hole_resolv, hole, rport):
    """Two daemons: evdns's own retries (1 s, twice) end the lookup first;
    with resolv.conf's "timeout:4 attempts:3" the RESOLVE_MS cap does."""
    slow_resolv = write(st, "slow-resolv.conf", "nameserver 127.0.0.1:%d\n"
                        "options timeout:4 attempts:3\n" % hole.port)
    before = hole.queries
    procs, ports = {}, {}
    for name, resolv in (("pd-silent", hole_resolv), ("pd-slow", slow_resolv)):
        procs[name], ports[name] = start(st, name, "redis://redis.svc.mxkit.test:%d/0" % rport,
                                         resolv)
    out, worst = [], 0.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 13:          # two lookups given up, and the retries
        for name in procs:
            o, w = ask(ports[name], "svc-silent", 5, "s%d" % len(out), gap=0.05)
            out += o
            worst = max(worst, w)
    tap.ok(out and all_closed(out), "silent DNS: all %d requests answered per on_store_error "
           "(closed: 451 4.3.0)" % len(out), diag=repr(out[:3]))
    tap.ok(worst < DEADLINE + SLACK, "silent DNS: slowest answer %.0f ms (bound: deadline "
           "100 ms; a lookup may take 5 s)" % (worst * 1000))
    tap.ok(hole.queries > before, "the daemons did ask the silent server (%d queries)"
           % (hole.queries - before))
    for name, why in (("pd-silent", "no address from the DNS servers (no answer, "
                       "SERVFAIL, REFUSED or no A/AAAA record)"),
                      ("pd-slow", "no answer within 5000 ms")):
        log = st.read_log(name)
        want = "redis: cannot resolve redis.svc.mxkit.test: " + why
        tap.is_(log.count(want), 1, "%s: one \"%s\" line in 13 s, not one per retry or "
                "worker" % (name, want), diag=log[-800:])
        tap.ok("getaddrinfo" not in log and "connected" not in log, "%s: nothing else" % name,
               diag=log[-400:])
    for name, proc in procs.items():
        proc.send_signal(signal.SIGTERM)
        tap.ok(wait_for(lambda: proc.poll() is not None, timeout=5),
               "%s stops at once with a lookup under way (exit %s)" % (name, proc.poll()))


def test_nxdomain_then_resolves(st, knot, knot_resolv, rport2):
    name = "pd-late"
    proc, port = start(st, name, "redis://late.svc.mxkit.test:%d/0" % rport2, knot_resolv)
    want = "cannot resolve late.svc.mxkit.test: no such name (NXDOMAIN)"
    tap.ok(wait_for(lambda: want in st.read_log(name), timeout=10),
           "NXDOMAIN: \"%s\" logged" % want, diag=st.read_log(name)[-600:])
    out, worst = ask(port, "svc-late", 20, "n", gap=0.1)
    tap.ok(all_closed(out) and worst < DEADLINE + SLACK,
           "NXDOMAIN: every request answered 451 4.3.0, slowest %.0f ms" % (worst * 1000),
           diag=repr(out[:3]))
    tap.is_(st.read_log(name).count(want), 1, "NXDOMAIN logged once over 2 s of retries")
    knot.set_zone(ZONE, ["redis A 127.0.0.2", "late A 127.0.0.2", 'txtonly TXT "x"'])
    tap.ok(wait_for(lambda: "redis: connected (late.svc.mxkit.test is 127.0.0.2)"
                    in st.read_log(name), timeout=10),
           "the name starts resolving: connected without a restart",
           diag=st.read_log(name)[-600:])
    tap.ok(settled(port), "every worker connected")
    out, _ = ask(port, "svc-late2", 4, "l")
    tap.is_([r.split()[0] for r in out], ["action=DUNNO"] * 3 + ["action=450"],
            "then the limit is enforced", diag=repr(out))
    tap.ok(proc.poll() is None, "the daemon was not restarted")


def test_other_failures(st, knot, knot_resolv, rport2):
    """NODATA and REFUSED: clear lines, fast answers; a reload that
    changes resolv_conf says it needs a restart."""
    # evdns's getaddrinfo says "failed" for NODATA as for SERVFAIL
    failed = "no address from the DNS servers (no answer, SERVFAIL, REFUSED or no A/AAAA record)"
    cases = (("pd-nodata", "txtonly.svc.mxkit.test", failed),
             ("pd-refused", "redis.elsewhere.test", failed))
    procs = {}
    for name, host, _ in cases:
        procs[name] = start(st, name, "redis://%s:%d/0" % (host, rport2), knot_resolv)
    for name, host, why in cases:
        want = "redis: cannot resolve %s: %s" % (host, why)
        tap.ok(wait_for(lambda: want in st.read_log(name), timeout=10),
               "%s: \"%s\"" % (name, want), diag=st.read_log(name)[-600:])
        out, worst = ask(procs[name][1], "svc-" + name, 10, "f", gap=0.1)
        tap.ok(all_closed(out) and worst < DEADLINE + SLACK,
               "%s: answered 451 4.3.0, slowest %.0f ms" % (name, worst * 1000))
        tap.is_(st.read_log(name).count(want), 1, "%s: logged once" % name)
    test_unreadable_as_user(st, knot, rport2)
    proc = procs["pd-nodata"][0]
    path = st.path("etc", "pd-nodata.conf")
    with open(path) as f:
        body = f.read()
    with open(path, "w") as f:
        f.write(body.replace("resolv_conf = %s" % knot_resolv,
                             "resolv_conf = %s" % st.path("etc", "hole-resolv.conf")))
    tap.ok(mp.hup(proc, st, "pd-nodata", 1), "reload with another resolv_conf accepted")
    log = st.read_log("pd-nodata")
    tap.ok("reload: resolv_conf changed but cannot change while running" in log,
           "the reload says resolv_conf needs a restart", diag=log[-600:])


def test_unreadable_as_user(st, knot, rport2):
    """The workers read resolv_conf and hosts_file after "user" took
    effect: -t and the start (as root) open them as that user. A file
    only root can read passed -t, and the started daemon then warned
    "Permission denied (as uid 65534)" and no store name ever resolved."""
    nobody = "user = nobody\n"
    store = "redis://redis.svc.mxkit.test:%d/0" % rport2
    secret = write(st, "root-only-resolv.conf", "nameserver 127.0.0.1:%d\n" % knot.port)
    os.chmod(secret, 0o600)
    hosts = write(st, "root-only-hosts", "127.0.0.2 redis.svc.mxkit.test\n")
    os.chmod(hosts, 0o600)
    public = write(st, "public-resolv.conf", "nameserver 127.0.0.1:%d\n" % knot.port)
    os.chmod(public, 0o644)
    cases = (("resolv_conf", secret, CONFIG % {"store": store, "resolv": secret,
                                                "extra": nobody}),
             ("hosts_file", hosts, CONFIG % {"store": store, "resolv": public,
                                              "extra": nobody + "hosts_file = %s\n" % hosts}))
    for what, path, body in cases:
        conf = mp.write_config(st, "pd-unreadable-" + what, body)
        want = ("%s: cannot open %s: Permission denied (checked as user nobody: the daemon "
                "reads it after dropping privileges)" % (what, path))
        res = subprocess.run([mp.POLICYD, "-t", "-c", conf], capture_output=True, text=True,
                             timeout=30)
        tap.ok(res.returncode == 1 and want in res.stderr,
               "-t: a %s only root can read is refused for user = nobody" % what,
               diag=res.stdout + res.stderr)
        res = subprocess.run([mp.POLICYD, "-f", "-c", conf], capture_output=True, text=True,
                             timeout=30)
        tap.ok(res.returncode == 1 and want in res.stderr and "started" not in res.stderr,
               "the start refuses it too, before serving (%s)" % what,
               diag=res.stderr[-600:])
        os.chmod(path, 0o644)
        res = subprocess.run([mp.POLICYD, "-t", "-c", conf], capture_output=True, text=True,
                             timeout=30)
        tap.is_(res.returncode, 0, "-t: the same %s readable by nobody is accepted" % what,
                diag=res.stdout + res.stderr)
    # every reload (SIGHUP) reads the configuration file and override_file
    # again, as nobody: one only root could read passed -t and the start,
    # and then every reload failed (helper-80)
    priv = st.path("priv-reload")
    os.makedirs(priv, exist_ok=True)
    os.chmod(priv, 0o700)
    override = os.path.join(priv, "override")
    with open(override, "w") as f:
        f.write("override per_user bob rate=100/1m\n")
    body = CONFIG % {"store": store, "resolv": public, "extra": nobody}
    conf = mp.write_config(st, "pd-unreadable-override", body + "override_file = %s\n" % override)
    inside = os.path.join(priv, "pd.conf")
    with open(inside, "w") as f:
        f.write(body)
    for what, path, want in (("override_file", conf, "%s: Permission denied (checked as user "
                                                     "nobody: every reload (SIGHUP) reads it "
                                                     "after dropping privileges)" % override),
                             ("the configuration file", inside, "Permission denied (checked "
                              "as user nobody: every reload (SIGHUP) reads it")):
        for flag in ("-t", "-f"):
            res = subprocess.run([mp.POLICYD, flag, "-c", path], capture_output=True,
                                 text=True, timeout=30)
            tap.ok(res.returncode == 1 and want in res.stderr and "started" not in res.stderr,
                   "%s: %s only root can read is refused for user = nobody" % (flag, what),
                   diag=res.stdout + res.stderr[-600:])
    os.chmod(priv, 0o755)
    res = subprocess.run([mp.POLICYD, "-t", "-c", conf], capture_output=True, text=True,
                         timeout=30)
    tap.is_(res.returncode, 0, "-t: the same override_file readable by nobody is accepted",
            diag=res.stdout + res.stderr)
    os.chmod(secret, 0o600)
    conf = mp.write_config(st, "pd-unreadable-nouser", CONFIG % {"store": store,
                                                                 "resolv": secret, "extra": ""})
    res = subprocess.run([mp.POLICYD, "-t", "-c", conf], capture_output=True, text=True,
                         timeout=30)
    tap.is_(res.returncode, 0, "-t: without user, root reads it and accepts it",
            diag=res.stdout + res.stderr)


def test_addresses(st, knot, knot_resolv, rport2):
    """A name with a dead address first (tried in turn, the live one
    used), and a name with only an AAAA record (IPv6 loopback)."""
    records = ["redis A 127.0.0.2", "multi A 127.0.0.1", "multi A 127.0.0.2"]
    v6 = mxdns._has_ipv6_loopback()
    if v6:
        records.append("v6only AAAA ::1")
        redis_server(st, "redis-v6", "::1", rport2)
    knot.set_zone(ZONE, records)
    tap.is_(knot.query("A", "multi.%s" % ZONE), ["127.0.0.1", "127.0.0.2"],
            "knotd serves the dead address first")
    _, mport = start(st, "pd-multi", "redis://multi.svc.mxkit.test:%d/0" % rport2, knot_resolv)
    if v6:
        _, vport = start(st, "pd-v6", "redis://v6only.svc.mxkit.test:%d/0" % rport2,
                         knot_resolv)
    tap.ok(wait_for(lambda: "redis: connected (multi.svc.mxkit.test is 127.0.0.2)"
                    in st.read_log("pd-multi"), timeout=10),
           "two addresses, the first dead: the second is used",
           diag=st.read_log("pd-multi")[-600:])
    tap.ok("cannot connect: Connection refused (multi.svc.mxkit.test is 127.0.0.1)"
           in st.read_log("pd-multi"), "the dead one was tried first, and said so",
           diag=st.read_log("pd-multi")[-600:])
    tap.ok(settled(mport), "every worker connected")
    out, _ = ask(mport, "svc-multi", 4, "mu")
    tap.is_([r.split()[0] for r in out], ["action=DUNNO"] * 3 + ["action=450"],
            "two addresses: the limit is enforced", diag=repr(out))
    if not v6:
        tap.skip("no IPv6 loopback on this host", "an AAAA-only name")
        return
    tap.ok(wait_for(lambda: "redis: connected (v6only.svc.mxkit.test is ::1)"
                    in st.read_log("pd-v6"), timeout=10),
           "an AAAA-only name connects to ::1", diag=st.read_log("pd-v6")[-600:])
    tap.ok(settled(vport), "every worker connected")
    out, _ = ask(vport, "svc-v6", 4, "v")
    tap.is_([r.split()[0] for r in out], ["action=DUNNO"] * 3 + ["action=450"],
            "AAAA only: the limit is enforced", diag=repr(out))
    tap.is_(redis_cli("::1", rport2, "EXISTS", "mxrl:{per_user:svc-v6}:3600000"), "1",
            "the key is in the redis-server on ::1")


def test_hosts_file(st, hole_resolv, rport2):
    name = "pd-hosts"
    hosts = write(st, "hosts", "# comment\n127.0.0.9 other.hosts\n127.0.0.2 "
                  "myredis.hosts alias.hosts\n")
    proc, port = start(st, name, "redis://alias.hosts:%d/0" % rport2, hole_resolv,
                       "hosts_file = %s" % hosts)
    tap.ok(wait_for(lambda: "redis: connected (alias.hosts is 127.0.0.2)" in st.read_log(name),
                    timeout=10),
           "a name from hosts_file (an alias) connects; the silent DNS server is not needed",
           diag=st.read_log(name)[-600:])
    tap.ok(settled(port), "every worker connected")
    out, _ = ask(port, "svc-hosts", 4, "h")
    tap.is_([r.split()[0] for r in out], ["action=DUNNO"] * 3 + ["action=450"],
            "hosts_file: the limit is enforced", diag=repr(out))


def start_sentinel(st, name, master_port):
    port = st.port(name)
    path = st.path("etc", name + ".conf")
    with open(path, "w") as f:
        f.write("port %d\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir %s\n"
                "sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n"
                "sentinel monitor %s localhost %d 1\n"
                "sentinel down-after-milliseconds %s 1000\n"
                % (port, st.dir, MASTER, master_port, MASTER))
    proc = st._spawn(name, ["redis-server", path, "--sentinel"], st.path("log", name + ".log"))
    st._ready(name, port, proc)
    return port


def test_sentinel_names(st, knot_resolv, rport2):
    # the master, on 127.0.0.1 (Sentinel resolves "localhost" itself)
    mport = st.port("redis-m")
    redis_server(st, "redis-m", "127.0.0.1", mport)
    sport = start_sentinel(st, "sentinel", mport)
    tap.ok(wait_for(lambda: redis_cli("127.0.0.1", sport, "SENTINEL",
                                      "get-master-addr-by-name", MASTER).split("\n")[:1]
                    == ["localhost"], timeout=10),
           "Sentinel announces the master by name (localhost)")
    hosts = write(st, "hosts-s", "127.0.0.1 localhost\n")
    name = "pd-sentinel"
    # a dead Sentinel name first: the round goes on to the next one
    proc, port = start(st, name, "redis-sentinel://gone.svc.mxkit.test:%d,sentinel:%d/%s"
                       % (sport, sport, MASTER), knot_resolv, "hosts_file = %s" % hosts)
    tap.ok(wait_for(lambda: "redis: connected to master localhost:%d (localhost is 127.0.0.1)"
                    % mport in st.read_log(name), timeout=10),
           "Sentinels by name: master found and its name resolved",
           diag=st.read_log(name)[-800:])
    tap.ok(wait_for(lambda: "sentinel: watching" in st.read_log(name), timeout=10),
           "the +switch-master subscription reached a Sentinel by name",
           diag=st.read_log(name)[-800:])
    tap.ok(settled(port), "every worker connected")
    out, _ = ask(port, "svc-sentinel", 4, "x")
    tap.is_([r.split()[0] for r in out], ["action=DUNNO"] * 3 + ["action=450"],
            "Sentinel by name: the limit is enforced", diag=repr(out))
    tap.is_(redis_cli("127.0.0.1", mport, "EXISTS", "mxrl:{per_user:svc-sentinel}:3600000"), "1",
            "the key is in the master")


class FakeSentinel:
    """Enough of Sentinel to announce masters by name: answers
    get-master-addr-by-name with self.master, confirms SUBSCRIBE and can
    publish +switch-master to every subscriber."""

    def __init__(self, master):
        self.master = master
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.subs = []
        threading.Thread(target=self.accept, daemon=True).start()

    @staticmethod
    def bulk(text):
        return b"$%d\r\n%s\r\n" % (len(text), text.encode())

    def accept(self):
        while True:
            c, _ = self.lsock.accept()
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        while True:
            try:
                data = c.recv(65536)
            except OSError:
                return
            if not data:
                return
            out = b""
            for cmd in data.split(b"*")[1:]:
                if b"get-master-addr-by-name" in cmd:
                    out += b"*2\r\n" + self.bulk(self.master[0]) + self.bulk(str(self.master[1]))
                elif b"SUBSCRIBE" in cmd:
                    out += (b"*3\r\n" + self.bulk("subscribe") + self.bulk("+switch-master")
                            + b":1\r\n")
                    self.subs.append(c)
            try:
                c.sendall(out)
            except OSError:
                return

    def switch(self, host, port):
        old, self.master = self.master, (host, port)
        text = "%s %s %d %s %d" % (MASTER, old[0], old[1], host, port)
        for c in self.subs:
            try:
                c.sendall(b"*3\r\n" + self.bulk("message") + self.bulk("+switch-master")
                          + self.bulk(text))
            except OSError:
                pass


def test_switch_by_name(st, knot, knot_resolv, rport2):
    """+switch-master to a master named by a host name: the name is looked
    up and the new master used; requests never wait meanwhile."""
    mport = st.port("redis-m")
    knot.set_zone(ZONE, ["fake A 127.0.0.1", "m1 A 127.0.0.2", "m2 A 127.0.0.1"])
    fake = FakeSentinel(("m1.svc.mxkit.test", rport2))
    name = "pd-switch"
    _, port = start(st, name, "redis-sentinel://fake:%d/%s" % (fake.port, MASTER), knot_resolv)
    tap.ok(wait_for(lambda: "redis: connected to master m1.svc.mxkit.test:%d (m1.svc.mxkit.test "
                    "is 127.0.0.2)" % rport2 in st.read_log(name), timeout=10),
           "a master announced by name is looked up and used", diag=st.read_log(name)[-800:])
    tap.ok(wait_for(lambda: len(fake.subs) >= 2, timeout=10),
           "both workers subscribed to +switch-master on the Sentinel found by name")
    fake.switch("m2.svc.mxkit.test", mport)
    out, worst = ask(port, "svc-switch", 20, "w", gap=0.02)
    tap.ok(worst < DEADLINE + SLACK, "during the switch no request waits: slowest %.0f ms"
           % (worst * 1000))
    tap.ok(wait_for(lambda: "redis: connected to master m2.svc.mxkit.test:%d (m2.svc.mxkit.test "
                    "is 127.0.0.1)" % mport in st.read_log(name), timeout=10),
           "+switch-master to another name: looked up, followed without a restart",
           diag=st.read_log(name)[-800:])
    tap.ok(settled(port), "every worker connected")
    out, _ = ask(port, "svc-switched", 4, "sw")
    tap.is_([r.split()[0] for r in out], ["action=DUNNO"] * 3 + ["action=450"],
            "after the switch the limit is enforced", diag=repr(out))
    tap.is_(redis_cli("127.0.0.1", mport, "EXISTS", "mxrl:{per_user:svc-switched}:3600000"), "1",
            "in the new master (m2 = 127.0.0.1)")


with Stack("policyd-dns") as st:
    tap.stack = st
    rport = st.port("redis")
    rport2 = st.port("redis-late")
    knot = Knot(st, {ZONE: ["redis A 127.0.0.1", "sentinel A 127.0.0.1"]})
    knot.start()
    # Kubernetes-style: a short name, search list, ndots:5; port in the line (evdns)
    knot_resolv = write(st, "resolv.conf", "nameserver 127.0.0.1:%d\nsearch %s\n"
                        "options ndots:5\n" % (knot.port, ZONE))
    hole = BlackHole()
    hole.start()
    hole_resolv = write(st, "hole-resolv.conf", "nameserver 127.0.0.1:%d\n" % hole.port)
    redis_server(st, "redis1", "127.0.0.1", rport)
    redis_server(st, "redis-late", "127.0.0.2", rport2)
    test_check(st, knot_resolv)
    test_resolves_and_moves(st, knot, knot_resolv, rport)
    test_silent_dns(st, hole_resolv, hole, rport)
    test_nxdomain_then_resolves(st, knot, knot_resolv, rport2)
    test_other_failures(st, knot, knot_resolv, rport2)
    test_hosts_file(st, hole_resolv, rport2)
    test_addresses(st, knot, knot_resolv, rport2)
    knot.set_zone(ZONE, ["redis A 127.0.0.2", "late A 127.0.0.2", "sentinel A 127.0.0.1"])
    test_sentinel_names(st, knot_resolv, rport2)
    test_switch_by_name(st, knot, knot_resolv, rport2)     # uses its redis-m

sys.exit(tap.done())
