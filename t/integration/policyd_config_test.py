#!/usr/bin/python3
"""policyd-ratelimit -t: the issue's example configuration is accepted
verbatim; broken configurations are refused with "file:line: message"
naming each problem; a broken configuration sent by SIGHUP is refused
and the old one keeps working."""

import os
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import run, tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

EXAMPLE = """\
listen = inet:127.0.0.1:10031
store = memory                  # or redis://127.0.0.1:6379/0, redis+unix:///run/redis.sock
on_store_error = open           # open: DUNNO and fall back to the local memory store; closed: defer
defer_reply = 450 4.7.1 Rate limit {limit} exceeded for {key}; retry in {retry_after}s

limit per_user   = sasl_username        rate=30/1m,500/1d  count=recipients
limit per_ip     = client_address/24/64 rate=10/1m         count=messages   unless=sasl_username
limit per_domain = sender_domain        rate=1000/1h       count=messages   dry_run=yes
limit big_sender = sasl_username        rate=50M/1h        count=bytes
override per_user svc-billing rate=5000/1h,50000/1d
exempt client_address 127.0.0.0/8 ::1
"""

BROKEN = [
    ("limit a = sasl_username rate=30/1x\n", 1, "rate"),
    ("limit a = sasl_username rate=30/1m count=letters\n", 1, "count"),
    ("limit a = sasl_username rate=30/1m action=explode\n", 1, "action"),
    ("limit a = client_address/33/64 rate=1/1m\n", 1, "out of range"),
    ("limit a = sasl_username\n", 1, "rate="),
    ("limit a = sasl_username rate=1/1m\nlimit a = sender rate=1/1m\n", 2, "duplicate"),
    ("override nosuch bob rate=1/1m\n", 1, "unknown limit"),
    ("exempt client_address 10.0.0.0/99\n", 1, "10.0.0.0/99"),
    ("on_store_error = maybe\n", 1, "on_store_error"),
    ("routed_recipients = refuse\n", 1, "routed_recipients must be reject or count"),
    ("store = postgres://x\n", 1, "store"),
    ("defer_reply = 550 5.7.1 no\n", 1, "defer_reply"),
    ("deadline = soon\n", 1, "deadline"),
    ("colour = blue\n", 1, "colour"),
    # the name is part of the store's key: "a:b" for "c" was "a" for "b:c"
    ("limit a = sasl_username rate=1/1h\nlimit a:b = client_name rate=1/1h\n", 2,
     "limit names are letters, digits"),
    ("limit a} = sasl_username rate=1/1h\n", 1, "limit names are letters, digits"),
]

# accepted, with a warning naming the line: what the daemon would read
# otherwise than the operator meant
WARNED = [
    ("limit u = sasl_usename rate=1/1h\n", 1, '"sasl_usename" is not an attribute'),
    ("limit u = sasl_username rate=1/1h unless=sasl_usernme\n", 1,
     'unless=: "sasl_usernme" is not an attribute'),
    ("exempt sasl_usrname bob\n", 1, 'exempt: "sasl_usrname" is not an attribute'),
    ("limit u = sasl_username rate=2/1h\noverride u bob rate=5/1h\noverride u BOB rate=9/1h\n",
     3, "override u BOB rate=9/1h: that limit and key were given an override before"),
]


def policyd_t(path):
    return run([mp.POLICYD, "-t", "-c", path])


with Stack("policyd-config") as st:
    tap.stack = st
    path = mp.write_config(st, "example", EXAMPLE)
    res = policyd_t(path)
    tap.is_(res.returncode, 0, "the issue's example configuration passes -t verbatim")
    tap.ok("configuration OK: 4 limits" in res.stdout, "-t reports the 4 limits",
           diag=res.stdout + res.stderr)

    for i, (text, line, word) in enumerate(BROKEN):
        path = mp.write_config(st, "broken%d" % i, text)
        res = policyd_t(path)
        expect = "%s:%d:" % (path, line)
        tap.ok(res.returncode == 1 and expect in res.stderr and word in res.stderr,
               "-t refuses %r with %s ... %s" % (text.strip(), expect, word),
               diag="rc=%d %s" % (res.returncode, res.stderr))

    for i, (text, line, words) in enumerate(WARNED):
        path = mp.write_config(st, "warned%d" % i, text)
        res = policyd_t(path)
        expect = "%s:%d: " % (path, line)
        tap.ok(res.returncode == 0 and expect in res.stderr and words in res.stderr,
               "-t accepts %r with a warning: %s ... %s" % (text.strip(), expect, words),
               diag="rc=%d %s" % (res.returncode, res.stderr))
    res = policyd_t(mp.write_config(st, "known", "limit a = sender_domain rate=1/1h\n"
                                    "limit b = ccert_fingerprint rate=1/1h "
                                    "unless=sasl_username\nexempt recipient_domain x.example\n"))
    tap.ok(res.returncode == 0 and "warning" not in res.stderr,
           "-t gives no warning for attributes Postfix sends or the daemon derives",
           diag=res.stderr)

    path = mp.write_config(st, "missing-override",
                           "override_file = /nonexistent/overrides\n")
    res = policyd_t(path)
    tap.ok(res.returncode == 1 and "/nonexistent/overrides" in res.stderr,
           "-t names a missing override_file", diag=res.stderr)

    # a FIFO where a password or hosts file goes: -t (and the start, with
    # TERM blocked) waited in open() for a writer that never comes
    fifo = st.path("etc", "secret.fifo")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    for key, extra in (("store_password_file", "store = redis://127.0.0.1:6379/0\n"),
                       ("sentinel_password_file",
                        "store = redis-sentinel://127.0.0.1:26379/mymaster/0\n"),
                       ("hosts_file", "store = redis://redis.example:6379/0\n")):
        path = mp.write_config(st, "fifo-" + key, extra + "%s = %s\n" % (key, fifo))
        try:
            res = run([mp.POLICYD, "-t", "-c", path], timeout=10)
            got = (res.returncode, res.stderr)
        except subprocess.TimeoutExpired:
            got = ("still waiting after 10 s", "")
        tap.ok(got[0] == 1 and fifo in got[1] and "not a regular file" in got[1],
               "-t refuses a FIFO as %s at once, naming it" % key, diag=repr(got))

    # redis+unix:// past sun_path (107 bytes): -t said OK, and hiredis cut
    # the path to 107 bytes and connected (with AUTH) to whatever listened
    # there (outside tester, f2_redis_unix_truncated)
    long_path = os.path.join(st.dir, "r" * (149 - len(st.dir) - 1))
    short_path = long_path[:107]
    trap = socket.socket(socket.AF_UNIX)
    trap.bind(short_path)
    trap.listen(5)
    trap.settimeout(0.5)
    path = mp.write_config(st, "unix-long", "listen = inet:127.0.0.1:%d\n"
                           "store = redis+unix://%s\n" % (st.port("unix-long"), long_path))
    res = policyd_t(path)
    tap.ok(res.returncode == 1 and "%s:2: store: redis+unix:// socket path longer than 107 "
           "bytes" % path in res.stderr, "-t refuses a redis+unix:// path of 149 bytes",
           diag=res.stdout + res.stderr)
    try:
        res = run([mp.POLICYD, "-f", "-c", path], timeout=5)
        got = (res.returncode, res.stderr)
    except subprocess.TimeoutExpired:
        got = ("still running after 5 s", "")
    tap.ok(got[0] == 1 and "longer than 107 bytes" in got[1],
           "and so does the start", diag=repr(got))
    try:
        conn, _ = trap.accept()
        conn.close()
        tap.ok(False, "nothing connects to the path cut to 107 bytes")
    except socket.timeout:
        tap.ok(True, "nothing connects to the path cut to 107 bytes")
    trap.close()
    os.unlink(short_path)

    live = EXAMPLE.replace("inet:127.0.0.1:10031", "inet:127.0.0.1:{port}").replace(
        "exempt client_address 127.0.0.0/8 ::1", "exempt client_address 192.0.2.0/24")
    proc, port, conf = mp.start_policyd(st, "policyd", live)
    tap.ok(proc.poll() is None, "the example configuration runs")
    with open(conf, "a") as f:
        f.write("limit broken = sasl_username rate=oops\n")
    proc.send_signal(signal.SIGHUP)
    tap.ok(wait_for(lambda: "reload of %s failed" % conf in st.read_log("policyd")),
           "a broken configuration on SIGHUP is refused and logged")
    tap.ok("%s:12:" % conf in st.read_log("policyd"), "the refusal names file and line",
           diag=st.read_log("policyd")[-800:])
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = s.makefile("rwb")
    reply = mp.policy_request(f, {"request": "smtpd_access_policy", "protocol_state": "RCPT",
                                  "sasl_username": "bob", "client_address": "10.0.0.1",
                                  "recipient": "x@example.net", "instance": "1"})
    tap.is_(reply, ["action=DUNNO"], "the old configuration keeps answering")
    s.close()

    # the password inside store_password_file rotated, then SIGHUP: it takes
    # effect at restart, and the reload says so without quoting either one
    # (outside attacker of 2026-12-03: the reload said nothing, and a
    # rotated secret looked applied)
    pwfile = st.path("etc", "redis.pw")
    with open(pwfile, "w") as f:
        f.write("Old-Secret-123\n")
    body = ("listen = inet:127.0.0.1:{port}\nstore = redis://127.0.0.1:%d/0\n"
            "store_password_file = %s\nlimit l = sasl_username rate=1/1h\n"
            % (st.port("no-redis"), pwfile))
    proc2, _, conf2 = mp.start_policyd(st, "pwrot", body)
    with open(pwfile, "w") as f:
        f.write("New-Secret-456\n")
    tap.ok(mp.hup(proc2, st, "pwrot", 1), "password file rotated: SIGHUP reloads")
    log = st.read_log("pwrot")
    tap.ok("store_password_file: the password in it changed; it takes effect at restart"
           in log, "the reload says the new password needs a restart", diag=log[-800:])
    tap.ok("Old-Secret" not in log and "New-Secret" not in log,
           "and quotes neither password")
    tap.ok(mp.hup(proc2, st, "pwrot", 2), "a second SIGHUP, nothing changed in the config")
    tap.is_(st.read_log("pwrot").count("the password in it changed"), 2,
            "still said while the file's password differs from the running one")
    with open(pwfile, "w") as f:
        f.write("Old-Secret-123\n")
    tap.ok(mp.hup(proc2, st, "pwrot", 3), "the old password put back: SIGHUP")
    tap.is_(st.read_log("pwrot").count("the password in it changed"), 2,
            "no warning when the file holds the running password")
    # the file removed, then a directory in its place: -t refuses both;
    # the reload (store unchanged) keeps the running password, and now
    # says that a start would refuse it (an outside tester of 2026-12-03:
    # it said "configuration reloaded" alone)
    kept = "the running password is kept, but a start would refuse this configuration"
    os.rename(pwfile, pwfile + ".gone")
    res = policyd_t(conf2)
    tap.ok(res.returncode == 1 and "No such file or directory" in res.stderr,
           "password file removed: -t refuses the configuration", diag=res.stderr)
    tap.ok(mp.hup(proc2, st, "pwrot", 4), "and SIGHUP reloads")
    tap.ok(wait_for(lambda: st.read_log("pwrot").count(kept) == 1, timeout=5),
           "the reload says the running password is kept but a start would refuse it",
           diag=st.read_log("pwrot")[-800:])
    os.mkdir(pwfile)
    tap.ok(mp.hup(proc2, st, "pwrot", 5), "a directory in its place: SIGHUP")
    tap.ok(wait_for(lambda: "not a regular file: " + kept in st.read_log("pwrot"), timeout=5),
           "said again, with why", diag=st.read_log("pwrot")[-800:])
    tap.ok("Old-Secret" not in st.read_log("pwrot"), "no password in the log")
    proc2.terminate()
    proc2.wait(timeout=10)

sys.exit(tap.done())
