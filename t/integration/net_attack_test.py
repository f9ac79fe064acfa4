#!/usr/bin/python3
"""policyd-ratelimit and proxyv2-shim attacked from outside: breaks that
t/integration/policyd_hostile_test.py and proxyv2_hostile_test.py do not
cover, each found against the running daemons and kept here so it stays
fixed.

policyd-ratelimit:
  - a trailing dot on a domain ("a@x.example.") is the same domain to
    Postfix (its envelope and delivery drop the dot) but was a fresh key:
    through real Postfix, sender, sender_domain and recipient_domain
    limits of N admit exactly N whatever the case and trailing dot of the
    addresses, and an override written with a dot applies; a property
    test over random case/dot spellings;
  - an IDN domain was a key per spelling (bücher.example, BÜCHER.example,
    xn--bcher-kva.example: one domain to DNS and Postfix): through real
    Postfix with SMTPUTF8, a limit of 2 admits exactly 2 of 5 spellings;
  - "exempt sender_domain partner.example" passed -t and never matched
    (exemptions read only literal request attributes): now read as the
    limits read it, in the same canonical form (case, dot, A-labels);
  - a sasl_username limit was per spelling: with case-insensitive logins
    (Dovecot's lookup lower-cased, as LDAP/SQL backends are) Postfix
    reports the name as typed, and a leaked password got a fresh budget
    per spelling (5 of 5 messages under a limit of 2): now exactly 2;
  - overrides of client_address limits written as an operator would
    ("2001:DB8:0:1::/64", "192.0.2.9/24", "2001:DB8::7") were compared as
    text with the daemon's canonical key and silently never applied:
    each now admits exactly its rate; an override that can match no
    request (a network of another length, a network on a per-address
    limit) is refused by -t and by the daemon, naming the line;
  - a SIGHUP in the middle of a transaction that adds a limit before a
    recipient_domain limit: the recipients accepted at RCPT were kept by
    limit index and charged to no limit at the end of the message, so a
    limit of 2 recipients per domain let a third through; now they are
    charged to the same limit, and a reload that removes the limit
    mid-transaction drops them (answered, daemon alive).

proxyv2-shim:
  - max_connections is one limit for the daemon, not a share per worker:
    with workers = 4 and max_connections = 5 a trusted balancer held 8
    connections open (ceil(5/4) per worker), and a worker the kernel
    sent more clients to refused them below the limit. Now exactly 5 of
    20 stay open (relaying and waiting for their header alike), the 15
    others are closed and logged "max_connections reached", untrusted
    peers take no place, and once the 5 end 5 new ones are admitted
    again (no place leaks).

Both daemons (and every daemon through common/daemon_config.c):
  - a listener or metrics_listen on port 0 passed -t and the daemon
    listened on a port the kernel picked, which no client knows; a shim
    backend on port 0 passed -t and every client got 421; a listener
    option given twice (mode=xclient ... mode=proxy-v2) silently kept
    the last, and so did a policyd limit's rate= or count= and an
    override's burst= given twice. Each is refused by -t and by the
    daemon, naming the line.
"""

import os
import random
import re
import smtplib
import select
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
# hypothesis keeps a cache (.hypothesis/) in the working directory: not in the tree
os.chdir(os.environ.get("TMPDIR", "/tmp"))
from hypothesis import given, settings, strategies as st_  # noqa: E402

from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402


def eom(f, attrs, n):
    """n END-OF-MESSAGE requests (one transaction each) on the file f;
    the list of actions."""
    out = []
    for _ in range(n):
        a = {"request": "smtpd_access_policy", "protocol_state": "END-OF-MESSAGE",
             "instance": "i%d" % random.getrandbits(48), "recipient_count": "1",
             "client_address": "203.0.113.1"}
        a.update(attrs)
        r = mp.policy_request(f, a)
        out.append(r[0] if r else None)
    return out


def admitted(actions):
    return sum(1 for a in actions if a == "action=DUNNO")


# ------------------------------------------------------------------ trailing dots
DOTS = """\
listen = inet:127.0.0.1:{port}
store = memory
limit per_sender = sender           rate=3/1h count=messages
limit per_sdom   = sender_domain    rate=2/1h count=messages
limit per_rdom   = recipient_domain rate=2/1h count=recipients
override per_sdom Big.Example. rate=4/1h
override per_sdom s0.example rate=10/1h
limit per_user   = sasl_username    rate=2/1h count=messages
override per_user ALICE@MXKIT.TEST rate=1000/1h
exempt sender_domain Partner.Example. börse.example
"""

# Dovecot as an operator with case-insensitive logins configures it (the
# way LDAP and SQL backends behave natively): the lookup lower-cases, the
# name Postfix learns is the one the client typed.
CASELESS_AUTH = """auth_username_format = %%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%Lu %s/dovecot/users
}
"""


def submit(st, sender, rcpts, user="alice@mxkit.test", options=()):
    s = smtplib.SMTP("127.0.0.1", st.port("pfd-submission"), timeout=30)
    s.ehlo("client.mxkit.test")
    s.login(user, st.users[user.lower()])
    res, data = mp.transaction(s, sender, rcpts, data=b"Subject: t\r\n\r\nhi\r\n",
                               mail_options=options)
    s.quit()
    return res, data


def test_trailing_dot_postfix(st):
    """Through real Postfix: the dot is the same domain to Postfix."""
    # sender_domain 2/1h: four messages from x.example, two with a dot
    got = [submit(st, s, ["r@y%d.example" % i])[1]
           for i, s in enumerate(["a@x.example", "b@x.example.", "c@X.Example.",
                                  "d@x.EXAMPLE"])]
    ok = [d for d in got if d and d[0] == 250]
    tap.is_(len(ok), 2, "sender_domain 2/1h: exactly 2 of 4 messages from x.example "
            "and x.example. accepted", diag=repr(got))
    log = st.read_log("pfd")
    tap.ok(re.search(r"qmgr\[\d+\]: \w+: from=<b@x\.example>", log)
           or re.search(r"qmgr\[\d+\]: \w+: from=<c@X\.Example>", log),
           "Postfix queued a sender given with a trailing dot without it (same domain)")

    # recipient_domain 2/1h counting recipients: y.example with and without dot
    res, data = submit(st, "e@z1.example", ["r1@q.example", "r2@q.example.",
                                            "r3@Q.EXAMPLE.", "r4@q.example"])
    tap.is_([c for c, _ in res], [250, 250, 450, 450],
            "recipient_domain 2/1h: the 3rd and 4th recipient (with or without the "
            "dot) deferred", diag=repr(res))
    tap.is_(data and data[0], 250, "the message goes out to its 2 recipients")

    # sender 3/1h: the same address with and without the dot
    got = [submit(st, s, ["r@w%d.example" % i])[1]
           for i, s in enumerate(["same@s%d.example" % 0, "Same@S0.example.",
                                  "same@s0.example.", "SAME@s0.example",
                                  "same@s0.example."])]
    tap.is_(sum(1 for d in got if d and d[0] == 250), 3,
            "sender 3/1h: exactly 3 of 5 messages from same@s0.example[.]", diag=repr(got))

    # the override written "Big.Example." applies to big.example (4, not 2)
    got = [submit(st, "u%d@big.example%s" % (i, "." * (i % 2)), ["r@v%d.example" % i])[1]
           for i in range(6)]
    tap.is_(sum(1 for d in got if d and d[0] == 250), 4,
            "override 'Big.Example.' 4/1h: exactly 4 of 6 from big.example[.]", diag=repr(got))


def test_idn_postfix(st):
    """One IDN domain in U-labels, upper case, A-labels (SMTPUTF8 through
    real Postfix): a sender_domain limit of 2 admits exactly 2 of 5."""
    got = [submit(st, s, ["r@i%d.example" % i], options=["SMTPUTF8"])[1]
           for i, s in enumerate(["a@bücher.example", "b@BÜCHER.example.",
                                  "c@xn--bcher-kva.example", "d@XN--BCHER-KVA.example",
                                  "e@Bücher.Example"])]
    tap.is_(sum(1 for d in got if d and d[0] == 250), 2,
            "sender_domain 2/1h: exactly 2 of 5 messages from bücher.example in 5 spellings",
            diag=repr(got))
    tap.ok(re.search(r"per_sdom: defer key=xn--bcher-kva\.example ", st.read_log("pdd")),
           "the deferral names the A-label key xn--bcher-kva.example")


def test_sasl_case(st):
    """One leaked login, many spellings: a sasl_username limit of 2 admits
    exactly 2 of 5 (each spelling was a fresh budget: 5 of 5)."""
    got = [submit(st, "b%d@c%d.example" % (i, i), ["r@u%d.example" % i], user=u)[1]
           for i, u in enumerate(["BOB@mxkit.test", "bob@mxkit.test", "Bob@mxkit.test",
                                  "bOB@mxkit.test", "boB@MXKIT.TEST"])]
    tap.ok(re.search(r"sasl_username=BOB@mxkit\.test", st.read_log("pfd")),
           "Postfix reports the login as typed (sasl_username=BOB@mxkit.test)")
    tap.is_(sum(1 for d in got if d and d[0] == 250), 2,
            "sasl_username 2/1h: exactly 2 of 5 messages from bob in 5 spellings",
            diag=repr(got))
    tap.ok(re.search(r"per_user: defer key=bob@mxkit\.test ", st.read_log("pdd")),
           "the deferral names one key, bob@mxkit.test")


def test_exempt_domain(port):
    """exempt sender_domain: read from the sender as the limits read it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rwb")
    for sender, what in (("x@partner.example", "partner.example"),
                         ("y@PARTNER.Example.", "PARTNER.Example."),
                         ("z@xn--brse-5qa.example", "xn--brse-5qa.example (börse)")):
        tap.is_(admitted(eom(f, {"sender": sender}, 4)), 4,
                "exempt sender_domain: 4 of 4 from %s (limit 2)" % what)
    tap.is_(admitted(eom(f, {"sender": "w@partner.example.net"}, 4)), 2,
            "not exempt: partner.example.net, 2 of 4")
    s.close()


def test_dot_property(port):
    """Any spelling (case, one trailing dot) of one domain: a sender_domain
    limit of N admits exactly N of N+3."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rwb")
    seen = set()
    failures = []

    @settings(max_examples=40, deadline=None)
    @given(st_.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1,
                    max_size=20),
           st_.lists(st_.tuples(st_.lists(st_.booleans(), min_size=40, max_size=40),
                                st_.booleans()), min_size=5, max_size=5))
    def prop(label, spellings):
        domain = "p-%s.example" % label
        if domain in seen:                     # the memory store remembers
            return
        seen.add(domain)
        actions = []
        for upper, dot in spellings:
            d = "".join(c.upper() if u else c for c, u in zip(domain, upper + [False] * 80))
            actions += eom(f, {"sender": "x@" + d + ("." if dot else "")}, 1)
        if admitted(actions) != 2:
            failures.append((domain, spellings, actions))
        assert admitted(actions) == 2

    try:
        prop()
    except Exception as e:          # hypothesis' own report; failures has the case
        failures.append(repr(e)[:300])
    s.close()
    tap.ok(not failures, "property: a limit of 2 admits exactly 2 of 5 requests "
           "for any spelling of a domain (%d domains)" % len(seen),
           diag=repr(failures[:1]))


# ------------------------------------------------------------------ client_address overrides
NETS = """\
listen = inet:127.0.0.1:{port}
store = memory
limit per_ip = client_address/24/64 rate=1/1h count=messages
override per_ip 2001:DB8:0:1::/64 rate=5/1h
override per_ip 192.0.2.9/24 rate=5/1h
override per_ip 198.51.100.0/24 rate=5/1h
override per_ip 2001:db8:0:2:0:0:0:0/64 rate=5/1h
"""

ADDRS = """\
listen = inet:127.0.0.1:{port}
store = memory
limit per_addr = client_address rate=1/1h count=messages
override per_addr 2001:DB8::7 rate=5/1h
override per_addr 2001:db8:0:0:0:0:0:8 rate=5/1h
override per_addr 192.0.2.10 rate=5/1h
"""


def test_address_overrides(st):
    pd, port, _ = mp.start_policyd(st, "pdn", NETS)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rwb")
    for override, client in (("2001:DB8:0:1::/64", "2001:db8:0:1::5"),
                             ("192.0.2.9/24", "192.0.2.77"),
                             ("198.51.100.0/24 (the canonical form: control)",
                              "198.51.100.200"),
                             ("2001:db8:0:2:0:0:0:0/64", "2001:db8:0:2:ffff::1")):
        tap.is_(admitted(eom(f, {"client_address": client}, 8)), 5,
                "override per_ip %s: exactly 5 of 8 from %s" % (override, client))
    tap.is_(admitted(eom(f, {"client_address": "2001:db8:0:3::1"}, 3)), 1,
            "per_ip without override: exactly 1 of 3 from 2001:db8:0:3::1")
    s.close()

    pd, port, _ = mp.start_policyd(st, "pda", ADDRS)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rwb")
    for override, client in (("2001:DB8::7", "2001:db8::7"),
                             ("2001:db8:0:0:0:0:0:8", "2001:db8::8"),
                             ("192.0.2.10 (control)", "192.0.2.10")):
        tap.is_(admitted(eom(f, {"client_address": client}, 8)), 5,
                "override per_addr %s: exactly 5 of 8 from %s" % (override, client))
    s.close()


def test_bad_overrides(st):
    """An override no request can match: -t and the daemon refuse it."""
    for name, line, want in (
            ("v4len", "limit per_ip = client_address/24/64 rate=1/1h\n"
             "override per_ip 192.0.2.0/16 rate=5/1h\n",
             r":2: override: IPv4 network length is not the limit's V4LEN"),
            ("v6len", "limit per_ip = client_address/24/64 rate=1/1h\n"
             "override per_ip 2001:db8::/48 rate=5/1h\n",
             r":2: override: IPv6 network length is not the limit's V6LEN"),
            ("pernet", "limit per_addr = client_address rate=1/1h\n"
             "override per_addr 192.0.2.0/24 rate=5/1h\n",
             r":2: override: a per-address limit takes an address, not a network"),
            ("badlen", "limit per_ip = client_address/24/64 rate=1/1h\n"
             "override per_ip 192.0.2.0/x rate=5/1h\n",
             r":2: override: IPv4 network length is not the limit's V4LEN")):
        path = mp.write_config(st, "bad-" + name, line + "listen = inet:127.0.0.1:%d\n"
                               % st.port("bad-" + name))
        r = subprocess.run([mp.POLICYD, "-t", "-c", path], capture_output=True, text=True,
                           timeout=30)
        tap.ok(r.returncode != 0 and re.search(want, r.stderr + r.stdout),
               "-t refuses %s" % line.splitlines()[1], diag=r.stderr + r.stdout)
        p = subprocess.Popen([mp.POLICYD, "-f", "-c", path], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:     # it started: kill it, and fail
            p.kill()
            out = "still running after 10 s: " + p.communicate()[0]
        tap.ok(p.returncode != 0 and re.search(want, out),
               "the daemon refuses %s" % line.splitlines()[1], diag=out)


# ------------------------------------------------------------------ reload mid-transaction
RELOAD_A = """\
listen = inet:127.0.0.1:{port}
store = memory
limit rd = recipient_domain rate=2/1h count=recipients
"""
RELOAD_B = """\
listen = inet:127.0.0.1:{port}
store = memory
limit ms = sender           rate=100/1h count=messages
limit zz = client_address   rate=100/1h count=messages
limit rd = recipient_domain rate=2/1h   count=recipients
"""
RELOAD_C = """\
listen = inet:127.0.0.1:{port}
store = memory
limit ms = sender rate=100/1h count=messages
"""


def policy(f, state, inst, rcpt=None, count=1):
    a = {"request": "smtpd_access_policy", "protocol_state": state, "instance": inst,
         "sender": "s@x.example", "client_address": "192.0.2.1",
         "recipient_count": str(count)}
    if rcpt:
        a["recipient"] = rcpt
    r = mp.policy_request(f, a)
    return r[0] if r else None


def test_reload_mid_transaction(st):
    pd, port, path = mp.start_policyd(st, "pdr", RELOAD_A)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rwb")
    first = [policy(f, "RCPT", "t1", "a@q.example"), policy(f, "RCPT", "t1", "b@q.example")]
    tap.is_(first, ["action=DUNNO"] * 2, "two recipients at q.example accepted at RCPT")
    with open(path, "w") as c:
        c.write(RELOAD_B.replace("{port}", str(port)))
    tap.ok(mp.hup(pd, st, "pdr", 1), "reloaded with two limits inserted before rd")
    tap.is_(policy(f, "END-OF-MESSAGE", "t1", None, 2), "action=DUNNO",
            "the end of the message is accepted")
    got = policy(f, "RCPT", "t2", "c@q.example")
    tap.ok(got and got.startswith("action=450 4.7.1 Rate limit rd exceeded for q.example"),
           "the next transaction's third recipient at q.example is deferred by rd "
           "(the two were charged across the reload)", diag=str(got))
    # a reload that removes the limit in the middle of a transaction
    tap.is_(policy(f, "RCPT", "t3", "d@p.example"), "action=DUNNO", "a recipient at p.example")
    with open(path, "w") as c:
        c.write(RELOAD_C.replace("{port}", str(port)))
    tap.ok(mp.hup(pd, st, "pdr", 2), "reloaded without rd")
    tap.is_(policy(f, "END-OF-MESSAGE", "t3", None, 1), "action=DUNNO",
            "its end of message is answered")
    s.close()
    tap.ok(pd.poll() is None, "pdr is still running")


# ------------------------------------------------------------------ proxyv2-shim
SHIM = build_path("proxyv2-shim", "proxyv2-shim")
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_inet(src, sport):
    body = socket.inet_aton(src) + socket.inet_aton("10.0.20.5") + struct.pack("!HH", sport, 25)
    return V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def still_open(socks, wait=1.0):
    """How many of socks the shim has not closed (after wait seconds)."""
    time.sleep(wait)
    n = 0
    for s in socks:
        if select.select([s], [], [], 0)[0]:
            try:
                if s.recv(1, socket.MSG_PEEK):
                    n += 1
            except OSError:
                pass
        else:
            n += 1
    return n


def test_shim_max_connections(st):
    backend = socket.socket()
    backend.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    backend.bind(("127.0.0.1", st.port("mc-backend")))
    backend.listen(64)
    held = []                                  # the backend keeps what it accepts

    def hold():
        while True:
            try:
                held.append(backend.accept()[0])
            except OSError:
                return
    threading.Thread(target=hold, daemon=True).start()
    conf = st.path("etc", "mc.conf")
    with open(conf, "w") as f:
        f.write("header_timeout = 60s\nworkers = 4\nmax_connections = 5\n"
                "log_rejects_per_second = 10000\n"
                "listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=proxy-v2 "
                "trusted=127.0.0.1/32\n" % (st.port("mc-shim"), st.port("mc-backend")))
    proc = st.start_daemon("mc", [SHIM, "-f", "-c", conf], port=st.port("mc-shim"))

    # untrusted peers first: refused, and they must take no place
    for _ in range(10):
        u = socket.socket()
        u.bind(("127.0.0.2", 0))
        u.connect(("127.0.0.1", st.port("mc-shim")))
        u.close()
    wait_for(lambda: st.read_log("mc").count("not in trusted") >= 10, timeout=10)

    # the stack's readiness probe: its line may come after the refusals
    # above (a CI run counted it among the admitted ones: 6 of 5)
    wait_for(lambda: st.read_log("mc").count("before the PROXY header") >= 1, timeout=10)
    time.sleep(0.2)
    probes = st.read_log("mc").count("before the PROXY header")
    socks = []
    for i in range(20):
        s = socket.create_connection(("127.0.0.1", st.port("mc-shim")), timeout=10)
        if i < 3:                              # three relaying, the rest waiting
            s.sendall(v2_inet("192.0.2.%d" % (i + 1), 40000 + i))
        socks.append(s)
    tap.is_(still_open(socks), 5, "workers = 4, max_connections = 5: exactly 5 of 20 "
            "connections stay open")
    tap.ok(wait_for(lambda: st.read_log("mc").count("max_connections reached") == 15,
                    timeout=10),
           "the 15 others are closed and logged 'max_connections reached'",
           diag="%d logged" % st.read_log("mc").count("max_connections reached"))
    for s in socks + held:                     # clients and backend end alike
        s.close()
    # which 5 were admitted is the kernel's choice (four workers accept at
    # once): relayed ones log " up=", waiting ones "before the PROXY header"
    ended = lambda: (st.read_log("mc").count(" up=")  # noqa: E731
                     + st.read_log("mc").count("before the PROXY header") - probes)
    tap.ok(wait_for(lambda: ended() == 5, timeout=10), "the shim logs the 5 admitted "
           "connections ending", diag="%d logged" % ended())
    again = [socket.create_connection(("127.0.0.1", st.port("mc-shim")), timeout=10)
             for _ in range(8)]
    tap.is_(still_open(again), 5, "after the 5 ended: exactly 5 of 8 new connections "
            "admitted (no place leaked or lost)")
    for s in again:
        s.close()
    tap.ok(proc.poll() is None, "the shim is still running")
    backend.close()


# ------------------------------------------------------------------ almost-right configurations
def refused(st, argv_t, argv_run, name, want):
    r = subprocess.run(argv_t, capture_output=True, text=True, timeout=30)
    tap.ok(r.returncode != 0 and re.search(want, r.stdout + r.stderr),
           "-t refuses %s" % name, diag=r.stdout + r.stderr)
    p = subprocess.Popen(argv_run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:         # it started: kill it, and fail
        p.kill()
        out = "still running after 10 s: " + p.communicate()[0]
    tap.ok(p.returncode != 0 and re.search(want, out), "the daemon refuses %s" % name,
           diag=out)


def test_port_zero(st):
    free = st.port("pz-free")
    for name, text, want in (
            ("listen inet:127.0.0.1:0", "listen = inet:127.0.0.1:0\n",
             r":1: listen inet:127\.0\.0\.1:0: port 0"),
            ("listen inet6:[::1]:0", "listen = inet6:[::1]:0\n",
             r":1: listen inet6:\[::1\]:0: port 0"),
            ("metrics_listen inet:127.0.0.1:0",
             "listen = inet:127.0.0.1:%d\nmetrics_listen = inet:127.0.0.1:0\n" % free,
             r":2: metrics_listen inet:127\.0\.0\.1:0: port 0")):
        path = mp.write_config(st, "pz-%d" % len(name), text)
        refused(st, [mp.POLICYD, "-t", "-c", path], [mp.POLICYD, "-f", "-c", path],
                "policyd " + name, want)
    for name, text, want in (
            ("a limit's rate= given twice",
             "limit a = sender rate=1/1m count=messages rate=100/1h\n",
             r":%d: limit: rate= is given twice"),
            ("a limit's count= given twice",
             "limit a = sender rate=1/1m count=messages count=recipients\n",
             r":%d: limit: count= is given twice"),
            ("an override's burst= given twice",
             "limit a = sender rate=1/1m\noverride a x@y.example rate=5/1h burst=2 burst=3\n",
             r":%d: override: burst= is given twice")):
        body = "listen = inet:127.0.0.1:%d\n" % free + text
        path = mp.write_config(st, "rep-%d" % len(name), body)
        refused(st, [mp.POLICYD, "-t", "-c", path], [mp.POLICYD, "-f", "-c", path],
                "policyd " + name, want % body.count("\n"))
    line = "listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=xclient trusted=127.0.0.1"
    for name, text, want in (
            ("a listener on port 0", line % (0, 2525) + "\n",
             r":1: listener 127\.0\.0\.1:0 .*: port 0"),
            ("a backend on port 0", line % (free, 0) + "\n",
             r":1: listener: backend port 0"),
            ("mode= given twice", line % (free, 2525) + " mode=proxy-v2\n",
             r":1: listener: mode= is given twice"),
            ("metrics_listen on port 0",
             line % (free, 2525) + "\nmetrics_listen = inet:127.0.0.1:0\n",
             r":2: metrics_listen inet:127\.0\.0\.1:0: port 0")):
        path = st.path("etc", "pz-shim-%d.conf" % len(name))
        with open(path, "w") as f:
            f.write(text)
        refused(st, [SHIM, "-t", "-c", path], [SHIM, "-f", "-c", path], "proxyv2-shim " + name,
                want)


with Stack("net-attack") as st:
    tap.stack = st
    st.start_dovecot(extra=CASELESS_AUTH % st.dir)
    st.start_sink()

    pdd, pd_port, _ = mp.start_policyd(st, "pdd", DOTS)
    st.start_postfix(name="pfd", submission=mp.restrictions(pd_port),
                     main={"smtputf8_enable": "yes"})
    test_trailing_dot_postfix(st)
    test_sasl_case(st)
    test_idn_postfix(st)
    pdp, pp_port, _ = mp.start_policyd(st, "pdp", DOTS)
    test_dot_property(pp_port)
    test_exempt_domain(pp_port)
    test_address_overrides(st)
    test_bad_overrides(st)
    test_reload_mid_transaction(st)
    test_shim_max_connections(st)
    test_port_zero(st)
    for name, proc in (("pdd", pdd), ("pdp", pdp)):
        tap.ok(proc.poll() is None, "%s is still running" % name)

sys.exit(tap.done())
