#!/usr/bin/python3
"""policyd-ratelimit in an MX cluster (issue 18): the Redis password from a
file, Redis Sentinel failover, and more than one worker.

  - store_password_file: -t shows the store with the file's name and
    never the password; every almost-right configuration (a password in
    the URL too, no file, an empty file, two lines, a memory store) is
    refused with file:line by -t and by the daemon; a daemon that reads
    a root-only file and then runs as "nobody" authenticates, counts in
    Redis and still reloads on SIGHUP; a wrong password logs one clear
    error naming the file, closed mode answers 451; no password in any
    log of the stack, /proc cmdline or environ.
"""

import glob
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import run, tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

RIGHT = "R1ght pw-4711:@/x"          # a space, ':', '@' and '/' inside
WRONG = "Wr0ng-pw-0815"
SECRETS = (RIGHT, WRONG, "R1ght", "Wr0ng")

BASE = """\
listen = inet:127.0.0.1:{port}
deadline = 100ms
store = %(store)s
on_store_error = %(mode)s
limit per_user = sasl_username rate=%(rate)s
%(extra)s
"""


def config(store, mode="closed", rate="5/1h", extra=""):
    return BASE % {"store": store, "mode": mode, "rate": rate, "extra": extra}


def request_bytes(user, instance):
    attrs = {"request": "smtpd_access_policy", "protocol_state": "END-OF-MESSAGE",
             "instance": instance, "client_address": "192.0.2.1",
             "recipient_count": "1", "size": "100", "sasl_username": user}
    return b"".join(b"%s=%s\n" % (k.encode(), v.encode()) for k, v in attrs.items()) + b"\n"


class Client:
    """One persistent policy connection, as Postfix's smtpd keeps."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def ask(self, user, instance):
        """One request: (action text or None on EOF/timeout, seconds)."""
        t0 = time.monotonic()
        try:
            self.sock.sendall(request_bytes(user, instance))
            while b"\n\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None, time.monotonic() - t0
                self.buf += chunk
        except OSError:
            return None, time.monotonic() - t0
        reply, self.buf = self.buf.split(b"\n\n", 1)
        return reply.decode(errors="replace"), time.monotonic() - t0

    def close(self):
        self.sock.close()


def ask_many(port, user, count, tag):
    c = Client(port)
    out = [c.ask(user, "%s%d" % (tag, i))[0] for i in range(count)]
    c.close()
    return out


def redis_cli(port, *args, password=None):
    argv = ["redis-cli", "-p", str(port)]
    if password:
        argv += ["--no-auth-warning", "-a", password]
    res = subprocess.run(argv + list(args), capture_output=True, text=True, errors="replace",
                         timeout=10)
    return res.stdout.strip()


def write_secret(st, name, data, mode=0o400):
    path = st.path("etc", name)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def no_secret_anywhere(st, procs, what):
    """No password in any file under the stack's log directory, nor in
    the daemons' command lines and environments."""
    texts = {}
    for path in glob.glob(st.path("log", "*")):
        with open(path, "rb") as f:
            texts[os.path.basename(path)] = f.read().decode(errors="replace")
    for name, proc in procs:
        for f in ("cmdline", "environ"):
            try:
                with open("/proc/%d/%s" % (proc.pid, f), "rb") as fh:
                    texts["%s %s" % (name, f)] = fh.read().decode(errors="replace")
            except OSError:
                pass
    leaks = sorted(set(k for k, v in texts.items() for s in SECRETS if s in v))
    tap.ok(not leaks and len(texts) > len(procs),
           "%s: no password in %d logs and /proc files" % (what, len(texts)),
           diag="found in: %r" % leaks)


# ------------------------------------------------------------- password file
def check_mode(st, rport, good):
    def t(name, body):
        path = mp.write_config(st, name, body)
        return path, run([mp.POLICYD, "-t", "-c", path])
    store = "redis://127.0.0.1:%d/0" % rport
    path, res = t("pwgood", config("redis://mxkit:@127.0.0.1:%d/0" % rport,
                                   extra="store_password_file = %s" % good))
    out = res.stdout + res.stderr
    tap.ok(res.returncode == 0 and "store redis://mxkit:***@127.0.0.1:%d/0 (password from %s)"
           % (rport, good) in out and not any(s in out for s in SECRETS),
           "-t: the store with an ACL user, the password masked, the file named", diag=out)
    empty = write_secret(st, "empty", b"\n")
    twolines = write_secret(st, "twolines", (RIGHT + "\n" + WRONG + "\n").encode())
    bad = [
        ("redis://:%s@127.0.0.1:%d/0" % (RIGHT, rport), good, 3, "give the password once"),
        (store, st.path("etc", "missing"), 7, "cannot open %s" % st.path("etc", "missing")),
        (store, empty, 7, "is empty"),
        (store, twolines, 7, "more than one line"),
        ("memory", good, 3, "store is memory"),
    ]
    for i, (url, pwfile, line, word) in enumerate(bad):
        body = "listen = inet:127.0.0.1:%d\ndeadline = 100ms\nstore = %s\n" \
               "on_store_error = closed\nlimit a = sasl_username rate=1/1h\n\n" \
               "store_password_file = %s\n" % (st.port("bad"), url, pwfile)
        path = mp.write_config(st, "pwbad%d" % i, body)
        res = run([mp.POLICYD, "-t", "-c", path])
        out = res.stdout + res.stderr
        tap.ok(res.returncode == 1 and "%s:%d:" % (path, line) in out and word in out
               and not any(s in out for s in SECRETS),
               "-t refuses %s at line %d without a password" % (word, line), diag=out)
        try:
            res = run([mp.POLICYD, "-f", "-c", path], timeout=5)
            rc, out = res.returncode, res.stdout + res.stderr
        except subprocess.TimeoutExpired:
            rc, out = "still running", ""
        tap.ok(rc == 1 and word in out and "listening" not in out
               and not any(s in out for s in SECRETS),
               "the daemon refuses it too, before it listens", diag="rc=%s %s" % (rc, out))


def test_password_file(st):
    st.start_redis()
    rport = st.port("redis")
    redis_cli(rport, "CONFIG", "SET", "requirepass", RIGHT)
    redis_cli(rport, "ACL", "SETUSER", "mxkit", "on", ">" + RIGHT, "~mxrl:*", "+@all",
              password=RIGHT)
    good = write_secret(st, "redis-password", (RIGHT + "\n").encode())
    wrong = write_secret(st, "wrong-password", (WRONG + "\r\n").encode())
    check_mode(st, rport, good)

    pdp, pp, _ = mp.start_policyd(st, "pdp", config(
        "redis://mxkit:@127.0.0.1:%d/0" % rport,
        extra="store_password_file = %s\nuser = nobody" % good))
    log = lambda: st.read_log("pdp")  # noqa: E731
    tap.ok(wait_for(lambda: "redis: connected" in log()),
           "the password read from a root-only file (0400) before becoming nobody: "
           "connected as the ACL user", diag=log())
    with open("/proc/%d/status" % pdp.pid) as f:
        uid = [ln.split()[1:] for ln in f if ln.startswith("Uid:")][0]
    tap.is_(set(uid), {str(__import__("pwd").getpwnam("nobody").pw_uid)},
            "the daemon runs as nobody")
    replies = ask_many(pp, "pw-user", 7, "p")
    tap.is_(replies.count("action=DUNNO"), 5, "and the limit counts in Redis: 5 of 7")
    tap.is_(redis_cli(rport, "EXISTS", "mxrl:{per_user:pw-user}:0", password=RIGHT), "1",
            "the charge is in Redis")
    pdp.send_signal(signal.SIGHUP)
    tap.ok(wait_for(lambda: "configuration reloaded" in log()),
           "SIGHUP as nobody: reloaded (the store and its password stay)", diag=log())
    replies = ask_many(pp, "pw-user", 2, "q")
    tap.ok(all(r and r.startswith("action=450 4.7.1 Rate limit per_user exceeded for pw-user")
               for r in replies),
           "after the reload the same Redis counts on: both deferred", diag=repr(replies))

    pdw, pw, _ = mp.start_policyd(st, "pdw", config(
        "redis://127.0.0.1:%d/0" % rport, extra="store_password_file = %s" % wrong))
    logw = lambda: st.read_log("pdw")  # noqa: E731
    tap.ok(wait_for(lambda: "AUTH refused" in logw()), "a wrong password is refused",
           diag=logw())
    line = [ln for ln in logw().splitlines() if "AUTH refused" in ln]
    tap.ok(line and "WRONGPASS" in line[0] and "(password from %s)" % wrong in line[0],
           "the error says what Redis said and which file the password came from",
           diag=repr(line))
    replies = ask_many(pw, "pw-user2", 10, "w")
    tap.is_(sum(1 for r in replies if r and r.startswith("action=451 4.3.0")), 10,
            "closed: every request answered 451 (store_error_reply)")
    time.sleep(2.5)
    tap.is_(logw().count("AUTH refused"), 1, "the refusal is logged once, not per retry")
    no_secret_anywhere(st, [("pdp", pdp), ("pdw", pdw)], "password file")
    for name, proc in (("pdp", pdp), ("pdw", pdw)):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        st.procs.pop(name, None)
    st.stop_redis()


with Stack("policyd-sentinel") as st:
    tap.stack = st
    test_password_file(st)

sys.exit(tap.done())
