#!/usr/bin/python3
"""policyd-ratelimit ctl and the control socket, attacked from outside
(what the man pages promise, as an unlucky operator meets it):

  1. A daemon that is stopped (SIGSTOP) or hung still has its control
     socket, and the kernel queues connections into its backlog: ctl must
     give up (exit 2, saying why) rather than hang the script or the
     monitoring check that runs it, both when it got into the backlog
     (waits for the answer) and when the backlog is full (connect blocks).
     The daemon answers again after SIGCONT.
  2. A KEY with a line break: the daemon reads one line, so
     "reset victim\\nother" would reset victim (and show/release act on
     another key than typed). ctl refuses it (exit 1), nothing is reset.
  3. A frozen Redis (SIGSTOP): ctl show through a Redis store answers with
     an error within a bounded time, naming the fault (it said
     "unavailable: connected", the state before); after SIGCONT it
     answers again.
  4. A notify command the daemon's user cannot execute (mode 0700 root's,
     or in a directory only root enters): checked as root alone it passed
     -t and failed with status 127 at the first lock. -t now refuses it
     naming the user, and the daemon does not start with it; one the user
     can run passes.
  5. The recommended setup, started as root with user = nobody and a
     control_group nobody is not in: every SIGHUP was refused ("this user
     can give the socket only a group it is a member of": the start-only
     check ran again as nobody), so no limit change ever applied. Now the
     reload applies a changed limit. And a control_socket in a directory
     the starting user cannot write: -t said OK and the daemon died at
     bind; now -t says so.
  6. A hostile locked value reaches the notify command as one argument,
     byte for byte: a HELO name with a leading '-', spaces, $(...),
     backquotes, quotes, ';' and '|' locks, the command gets exactly it as
     $1 and the quarantine's name as $2, and nothing in it ran.
  7. Secrets of a redis-sentinel:// store (store_password_file,
     sentinel_password_file, a password in the URL) appear in no output of
     -t and in no log line of a daemon whose Sentinels do not answer.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

CONFIG = """\
listen = inet:127.0.0.1:{port}
store = %(store)s
on_store_error = closed
deadline = 100ms
control_socket = %(sock)s
limit per_user = sasl_username rate=1/1h
"""
CLIENT_WAIT = 30                # policyd-ratelimit ctl's CTL_CLIENT_WAIT


def ctl(st, name, *args, timeout=CLIENT_WAIT + 30):
    sock = st.path("run", name + ".ctl")
    if name == "pdu":
        sock = st.path("ctlrun", "u.ctl")
    argv = [mp.POLICYD, "ctl", "-s", sock] + list(args)
    start = time.monotonic()
    try:
        res = subprocess.run(argv, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", "hung for %ds" % timeout, time.monotonic() - start
    return (res.returncode, res.stdout.decode(errors="replace"),
            res.stderr.decode(errors="replace"), time.monotonic() - start)


def charge(port, user):
    """One message of user, as Postfix asks: RCPT, then END-OF-MESSAGE."""
    replies = []
    for stage in ("RCPT", "END-OF-MESSAGE"):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        f = sock.makefile("rwb")
        reply = mp.policy_request(f, {
            "request": "smtpd_access_policy", "protocol_state": stage,
            "instance": "i-" + user, "sasl_username": user, "sender": "",
            "recipient": "r@example.net", "client_address": "192.0.2.7", "size": "100"})
        sock.close()
        replies.append(reply and reply[0])
    return replies


def test_stopped_daemon(st, proc):
    sock = st.path("run", "pdm.ctl")
    rc, out, err, _ = ctl(st, "pdm", "show", "alice")
    tap.ok(rc == 0 and "remaining=" in out, "ctl answers a running daemon", diag=out + err)
    proc.send_signal(signal.SIGSTOP)
    held = []
    try:
        first = subprocess.Popen([mp.POLICYD, "ctl", "-s", sock, "show", "alice"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        start = time.monotonic()
        time.sleep(0.5)
        # fill the listen backlog (64): the next connect(2) blocks
        for _ in range(200):
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(sock)
            except (BlockingIOError, InterruptedError):
                s.close()
                break
            held.append(s)
        tap.ok(len(held) < 200, "the stopped daemon's backlog is full after %d connections"
               % len(held))
        rc2, _, err2, took2 = ctl(st, "pdm", "show", "alice")
        try:
            _, err1 = first.communicate(timeout=CLIENT_WAIT + 30)
            rc1, took1 = first.returncode, time.monotonic() - start
        except subprocess.TimeoutExpired:
            first.kill()
            err1, rc1, took1 = b"hung", None, time.monotonic() - start
        err1 = err1.decode(errors="replace")
        tap.ok(rc1 == 2 and took1 < CLIENT_WAIT + 10 and "no answer" in err1,
               "ctl in the backlog of a stopped daemon gives up with exit 2 (%.1fs)" % took1,
               diag="rc=%r %s" % (rc1, err1))
        tap.ok(rc2 == 2 and took2 < CLIENT_WAIT + 10 and "accepts no connection" in err2,
               "ctl facing a full backlog gives up with exit 2 (%.1fs)" % took2,
               diag="rc=%r %s" % (rc2, err2))
    finally:
        for s in held:
            s.close()
        proc.send_signal(signal.SIGCONT)
    # the backlog's connections (closed by their clients) are accepted
    # first and hold the 8 control slots until their EOF is read: "too
    # many control connections; try again" meanwhile, as it says
    answer = []

    def answered():
        answer[:] = ctl(st, "pdm", "show", "alice")[:3]
        return answer[0] == 0 or "too many control connections" not in answer[2]
    wait_for(answered, timeout=15, interval=0.3)
    rc, out, err = answer
    tap.ok(rc == 0 and "remaining=" in out, "after SIGCONT ctl is answered again",
           diag=out + err)
    tap.ok(proc.poll() is None, "the daemon survived its stopped phase")


def test_line_break(st, port):
    replies = charge(port, "victim")
    tap.ok(replies == ["action=DUNNO", "action=DUNNO"], "victim sends its one message",
           diag=repr(replies))
    rc, out, _, _ = ctl(st, "pdm", "show", "victim")
    tap.ok(rc == 0 and "remaining=0 of=1" in out, "victim's burst is used", diag=out)
    for key in ("victim\nother", "victim\r\nother", "victim\r", "victim\n"):
        rc, out, err, _ = ctl(st, "pdm", "reset", key)
        tap.ok(rc == 1 and "line break" in err, "ctl reset %r is refused" % key,
               diag="rc=%r out=%r err=%r" % (rc, out, err))
        rc, out, err, _ = ctl(st, "pdm", "show", "victim")
        tap.ok(rc == 0 and "remaining=0 of=1" in out, "... and victim was not reset",
               diag=out + err)
    rc, out, _, _ = ctl(st, "pdm", "reset", "victim")
    tap.ok(rc == 0 and "reset keys=1" in out, "a plain reset of victim still works",
           diag=out)


def test_frozen_redis(st, redis_proc):
    rc, out, err, _ = ctl(st, "pdr", "show", "alice")
    tap.ok(rc == 0 and "remaining=" in out, "ctl through Redis answers", diag=out + err)
    redis_proc.send_signal(signal.SIGSTOP)
    try:
        rc, out, err, took = ctl(st, "pdr", "show", "alice")
        tap.ok(rc == 1 and "unavailable" in err and took < 15,
               "with Redis frozen, ctl show answers an error (%.1fs)" % took,
               diag="rc=%r out=%r err=%r" % (rc, out, err))
        # helper-107: the first call's reason was the state before the
        # fault ("unavailable: connected"): the calls the watchdog's drop
        # failed read it before the drop said why
        tap.ok("store redis unavailable: no answer for" in err and ": connected" not in err,
               "and names the fault, not the state before it", diag=err)
    finally:
        redis_proc.send_signal(signal.SIGCONT)
    tap.ok(wait_for(lambda: ctl(st, "pdr", "show", "alice")[0] == 0, timeout=15),
           "after SIGCONT of Redis ctl answers again")


def test_notify_user(st):
    os.makedirs(st.path("priv"), exist_ok=True)
    os.chmod(st.path("priv"), 0o700)
    os.chmod(st.dir, 0o755)
    os.chmod(st.path("etc"), 0o755)
    cases = []
    for where, mode, good in (("etc", 0o700, False), ("priv", 0o755, False),
                              ("etc", 0o755, True)):
        path = st.path(where, "notify-%o" % mode)
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, mode)
        cases.append((path, good))
    for i, (path, good) in enumerate(cases):
        body = ("listen = inet:127.0.0.1:{port}\nstore = memory\nuser = nobody\n"
                "limit per_user = sasl_username rate=1/1h\n"
                "quarantine q = sasl_username when=per_user exceeded=1/1m notify=%s\n" % path)
        conf = mp.write_config(st, "pdn%d" % i, body.replace("{port}", str(st.port("pdn"))))
        res = subprocess.run([mp.POLICYD, "-t", "-c", conf], capture_output=True, timeout=30)
        text = (res.stdout + res.stderr).decode(errors="replace")
        if good:
            tap.ok(res.returncode == 0, "-t accepts a notify command user nobody can run: %s"
                   % path, diag=text)
            continue
        tap.ok(res.returncode == 1 and "user nobody cannot execute it" in text,
               "-t refuses a notify command user nobody cannot run: %s" % path, diag=text)
        res = subprocess.run([mp.POLICYD, "-f", "-c", conf], capture_output=True, timeout=30)
        text = (res.stdout + res.stderr).decode(errors="replace")
        tap.ok(res.returncode != 0 and "cannot execute it" in text,
               "... and the daemon does not start with it", diag=text)


def test_reload_as_user(st):
    os.makedirs(st.path("ctlrun"), exist_ok=True)
    os.chmod(st.path("ctlrun"), 0o755)
    body = ("listen = inet:127.0.0.1:{port}\nstore = memory\nuser = nobody\n"
            "control_socket = %s\ncontrol_group = adm\n"
            "limit per_user = sasl_username rate=%%d/1h\n" % st.path("ctlrun", "u.ctl"))
    proc, port, conf = mp.start_policyd(st, "pdu", body % 1)
    with open(conf, "w") as f:
        f.write((body % 5).replace("{port}", str(port)))
    ok = mp.hup(proc, st, "pdu", 1)
    tap.ok(ok and "reload of" not in st.read_log("pdu"),
           "started as root with user and control_group: SIGHUP reloads",
           diag=st.read_log("pdu")[-1500:])
    rc, out, err, _ = ctl(st, "pdu", "show", "somebody")
    tap.ok(rc == 0 and "of=5" in out, "... and the changed limit applies", diag=out + err)
    proc.terminate()
    proc.wait()
    os.makedirs(st.path("rootonly"), exist_ok=True)
    os.chmod(st.path("rootonly"), 0o755)
    body = ("listen = inet:127.0.0.1:%d\nstore = memory\ncontrol_socket = %s\n"
            "limit per_user = sasl_username rate=1/1h\n"
            % (st.port("pdw"), st.path("rootonly", "w.ctl")))
    conf = mp.write_config(st, "pdw", body)
    os.chmod(conf, 0o644)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    res = subprocess.run(nobody + [mp.POLICYD, "-t", "-c", conf], capture_output=True,
                         timeout=30)
    text = (res.stdout + res.stderr).decode(errors="replace")
    tap.ok(res.returncode == 1 and "cannot create a socket in" in text,
           "-t as nobody: control_socket in a directory nobody cannot write", diag=text)


def test_notify_argv(st):
    got = st.path("run", "argv")
    pwned = st.path("run", "pwned")
    notify = st.path("etc", "argv.sh")
    with open(notify, "w") as f:
        f.write("#!/bin/sh\nprintf '%%s|%%s|%%d\\n' \"$1\" \"$2\" $# >> %s\n" % got)
    os.chmod(notify, 0o755)
    body = ("listen = inet:127.0.0.1:{port}\nstore = memory\nnotify_timeout = 5s\n"
            "limit per_helo = helo_name rate=1/1h\n"
            "quarantine hostile = helo_name when=per_helo exceeded=1/1m action=defer "
            "notify=%s\n" % notify)
    proc, port, _ = mp.start_policyd(st, "pdh", body)
    helo = "-rf $(touch %s) `touch %s`;x|y 'q' \"d\" --help" % (pwned, pwned)
    for stage in ("RCPT", "END-OF-MESSAGE", "RCPT", "END-OF-MESSAGE"):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        mp.policy_request(sock.makefile("rwb"), {
            "request": "smtpd_access_policy", "protocol_state": stage,
            "instance": "h", "sasl_username": "", "sender": "", "helo_name": helo,
            "recipient": "r@example.net", "client_address": "192.0.2.7", "size": "1"})
        sock.close()
    tap.ok(wait_for(lambda: os.path.exists(got), timeout=10), "the notify command ran",
           diag=st.read_log("pdh")[-1500:])
    text = open(got).read() if os.path.exists(got) else ""
    tap.is_(text, "%s|hostile|2\n" % helo, "it got the value as $1 byte for byte, the name "
            "as $2, two arguments")
    tap.ok(not os.path.exists(pwned), "nothing in the value was run")
    proc.terminate()
    proc.wait()


def test_sentinel_secrets(st):
    secrets = {"store": "St0re-pw-9f3a", "sentinel": "Sent-pw-77c1", "url": "Url-pw-4e2b"}
    pw = st.path("etc", "store.pw")
    spw = st.path("etc", "sentinel.pw")
    with open(pw, "w") as f:
        f.write(secrets["store"] + "\n")
    with open(spw, "w") as f:
        f.write(secrets["sentinel"] + "\n")
    dead = st.port("dead-sentinel")      # nothing listens there
    good = ("listen = inet:127.0.0.1:{port}\nstore = redis-sentinel://127.0.0.1:%d/mymaster\n"
            "store_password_file = %s\nsentinel_password_file = %s\n"
            "limit per_user = sasl_username rate=1/1h\n" % (dead, pw, spw))
    path = mp.write_config(st, "pds-t", good.replace("{port}", str(st.port("pds"))))
    res = subprocess.run([mp.POLICYD, "-t", "-c", path], capture_output=True, timeout=30)
    text = (res.stdout + res.stderr).decode(errors="replace")
    tap.ok(res.returncode == 0, "-t accepts a sentinel store with password files", diag=text)
    bad = [
        "store = redis-sentinel://:%s@127.0.0.1:%d/\n" % (secrets["url"], dead),
        "store = redis-sentinel://:%s@[127.0.0.1:%d/mymaster\n" % (secrets["url"], dead),
        "store = redis-sentinel://:%s@127.0.0.1:%d/mymaster\nstore_password_file = %s\n"
        % (secrets["url"], dead, pw),
        "store = redis-sentinel://:%s@127.0.0.1:99999/mymaster\n" % secrets["url"],
    ]
    for i, line in enumerate(bad):
        body = "listen = inet:127.0.0.1:1\n" + line + "limit per_user = sasl_username rate=1/1h\n"
        path = mp.write_config(st, "pds-bad%d" % i, body)
        res = subprocess.run([mp.POLICYD, "-t", "-c", path], capture_output=True, timeout=30)
        text = (res.stdout + res.stderr).decode(errors="replace")
        tap.ok(res.returncode == 1 and not any(s in text for s in secrets.values()),
               "-t refuses bad sentinel store %d without quoting a secret" % i, diag=text)
    proc, _, _ = mp.start_policyd(st, "pds", good)
    time.sleep(3)
    log = st.read_log("pds")
    tap.ok(proc.poll() is None and "sentinel" in log.lower(),
           "a daemon whose Sentinels do not answer runs and logs about them", diag=log[-2000:])
    tap.ok(not any(s in log for s in secrets.values()), "no secret in its log",
           diag=log[-2000:])
    proc.terminate()


def fill(port, count):
    """count keys in the store, requests pipelined 5000 at a time."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    buf = b""
    for base in range(0, count, 5000):
        end = min(base + 5000, count)
        sock.sendall(b"".join(
            b"request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\ninstance=f%d\n"
            b"sasl_username=filler%07d\nrecipient=r@example.net\nrecipient_count=1\n"
            b"size=100\nclient_address=192.0.2.9\n\n"
            % (i, i) for i in range(base, end)))
        for _ in range(base, end):
            while b"\n\n" not in buf:
                buf += sock.recv(1 << 20)
            buf = buf.split(b"\n\n", 1)[1]
    sock.close()


def test_top_walk(st):
    """A `top` over a memory store of 300,000 keys: the walk held worker
    0's loop for all of it (0.66 s for 500,000), and with workers = 1
    every request waited that long; the doc promises at most a batch.
    Requests sent while it runs must wait far less than the walk."""
    proc, port, _ = mp.start_policyd(st, "pdw", CONFIG.replace("deadline = 100ms", "workers = 1")
                                     % {"store": "memory", "sock": st.path("run", "pdw.ctl")})
    fill(port, 300000)
    done = []

    def probe():
        while not done:
            t0 = time.monotonic()
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            mp.policy_request(sock.makefile("rwb"), {
                "request": "smtpd_access_policy", "protocol_state": "RCPT",
                "instance": "p%f" % t0, "sasl_username": "prober",
                "recipient": "r@example.net", "client_address": "192.0.2.9"})
            sock.close()
            spans.append((t0, time.monotonic()))
            time.sleep(0.005)
    spans = []
    prober = threading.Thread(target=probe)
    prober.start()
    time.sleep(0.3)
    start = time.monotonic()
    rc, out, err, took = ctl(st, "pdw", "top", "5")
    end = time.monotonic()
    done.append(1)
    prober.join()
    waits = [b - a for a, b in spans]
    inside = sum(1 for a, b in spans if a >= start and b <= end)
    tap.ok(rc == 0 and "filler" in out, "top 5 over 300,000 keys answers (%.2fs)" % took,
           diag=out + err)
    # The prober asks one request at a time: a walk holding the loop lets
    # one request in, which waits nearly all of it; a walk in batches lets
    # many start and finish while it runs. Counted, not timed to the
    # batch, so that one pause of a loaded machine does not fail it.
    tap.ok(inside >= 3 and max(waits) < 0.75 * (end - start),
           "requests during it wait at most a batch: %d started and answered during the "
           "%.2fs walk, longest wait %.3fs (%d requests)"
           % (inside, end - start, max(waits or [0]), len(waits)))
    tap.ok(proc.poll() is None, "pdw is still running")


def test_domain_key(st):
    """helper-129: KEY an address, a sender_domain limit: show read the
    key bob@snd.example (no request uses it: "remaining 2 of 2") and
    reset reset nothing. Each limit finds its own key: the domain."""
    body = CONFIG.replace("limit per_user = sasl_username rate=1/1h",
                          "limit per_snd = sender_domain rate=2/1h\n"
                          "limit per_sender = sender rate=9/1h") % {
        "store": "memory", "sock": st.path("run", "pdd.ctl")}
    proc, port, _ = mp.start_policyd(st, "pdd", body)
    for i in range(3):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        f = sock.makefile("rwb")
        for stage in ("RCPT", "END-OF-MESSAGE"):
            reply = mp.policy_request(f, {
                "request": "smtpd_access_policy", "protocol_state": stage,
                "instance": "snd%d" % i, "sender": "bob@snd.example",
                "recipient": "r@example.net", "client_address": "192.0.2.7", "size": "100"})
        sock.close()
    tap.ok(reply and reply[0].startswith("action=4"), "the 3rd message of snd.example is "
           "deferred", diag=repr(reply))
    rc, out, err, _ = ctl(st, "pdd", "show", "Bob@SND.example")
    tap.ok(rc == 0 and re.search(r"^limit=per_snd .* remaining=0 of=2 .* key=snd\.example$",
                                 out, re.M)
           and re.search(r"^limit=per_sender .* remaining=7 of=9 .* key=bob@snd\.example$",
                         out, re.M), "show of an address: the domain limit's key is its "
           "domain, the sender limit's the address", diag=out + err)
    rc, out, err, _ = ctl(st, "pdd", "reset", "bob@snd.example")
    tap.is_((rc, out), (0, "reset keys=2\n"), "reset of the address resets both keys",
            diag=err)
    tap.ok(proc.poll() is None, "pdd is still running")


with Stack("policyd-ctl-attack") as st:
    tap.stack = st
    os.makedirs(st.path("run"), exist_ok=True)
    redis_port = st.start_redis()
    redis_proc = st.procs["redis"]
    procs = {}
    for name, store in (("pdm", "memory"), ("pdr", "redis://127.0.0.1:%d" % redis_port)):
        procs[name], port, _ = mp.start_policyd(st, name, CONFIG % {
            "store": store, "sock": st.path("run", name + ".ctl")})
        if name == "pdm":
            mport = port
    tap.ok(wait_for(lambda: os.path.exists(st.path("run", "pdm.ctl"))), "pdm's control socket")
    tap.ok(wait_for(lambda: "redis: connected" in st.read_log("pdr")), "pdr connected to Redis")
    test_line_break(st, mport)
    test_stopped_daemon(st, procs["pdm"])
    test_frozen_redis(st, redis_proc)
    test_notify_user(st)
    test_reload_as_user(st)
    test_notify_argv(st)
    test_sentinel_secrets(st)
    test_top_walk(st)
    test_domain_key(st)
    for name, proc in procs.items():
        tap.ok(proc.poll() is None, "%s is still running" % name)

sys.exit(tap.done())
