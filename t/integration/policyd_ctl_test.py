#!/usr/bin/python3
"""policyd-ratelimit's control command and quarantine (issue 18):

  1. -t refuses quarantine and control configurations that are almost
     right, each with a message naming the problem.
  2. ctl show / top / reset / release give the same answers from the
     memory store and from Redis.
  3. Only root, the daemon's user or control_group may use the control
     socket: the file mode stops others, and SO_PEERCRED stops them even
     when the mode is opened.
  4. Quarantine through two real Postfix nodes sharing one Redis:
     svc-alerts over its limit in 3 transactions within 10 minutes is
     locked; its mail is HELD (postqueue -p shows '!') on both nodes,
     decided at RCPT; a lock log line, a metric, the notify command with
     the key; ctl release on either node and mail flows again.
  5. Hostile control clients: 100 KB key, NUL bytes, silent clients,
     1000 connections, top with N huge or negative, release of an
     unknown key; a notify command that hangs or floods its output.
  6. A lock set while Redis is down (on_store_error = open) lives in the
     node's local store; ctl release clears it there.
  7. Property: any sequence of messages and resets gets the same replies
     and remaining counts from both stores, as the model says; through
     Postfix the check is at RCPT and the charge at END-OF-DATA; a
     reload applies a new quarantine and says control_group needs a
     restart.
"""

import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request

# hypothesis keeps a cache (.hypothesis/) in the working directory: not in the tree
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      "/tmp/mxkit-hypothesis-%d" % os.getuid())
from hypothesis import given, settings, strategies as hs, HealthCheck  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

GROUP, GID = "adm", 4           # control_group; nobody is not in it

CONFIG = """\
listen = inet:127.0.0.1:{port}
store = %(store)s
on_store_error = open
deadline = 100ms
control_socket = %(sock)s
control_group = adm
metrics_listen = inet:127.0.0.1:%(mport)d
notify_timeout = 2s
limit per_user = sasl_username rate=2/8s
limit per_sender = sender rate=3/1h
quarantine abuse = sasl_username when=per_user exceeded=3/10m action=hold notify=%(notify)s
"""
HOSTILE = """\
limit per_bulk = helo_name rate=1/1h
quarantine hang = helo_name when=per_bulk exceeded=1/1m action=defer notify=%(hang)s
quarantine flood = helo_name when=per_bulk exceeded=1/1m action=reject notify=%(flood)s
"""


def script(st, name, body):
    path = st.path("etc", name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def ctl(st, name, *args, as_user=None):
    """policyd-ratelimit ctl; as_user: setpriv options to run it as someone else."""
    argv = [mp.POLICYD, "ctl", "-s", st.path("run", name + ".ctl")] + list(args)
    if as_user:
        argv = ["setpriv"] + as_user + ["--"] + argv
    res = subprocess.run(argv, capture_output=True, timeout=30)
    return res.returncode, res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")


def raw_ctl(st, name, data, read=True):
    s = socket.socket(socket.AF_UNIX)
    s.connect(st.path("run", name + ".ctl"))     # blocking: waits for a full backlog
    s.settimeout(10)
    try:
        s.sendall(data)
    except OSError:
        pass
    if not read:
        return s
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    s.close()
    return out.decode(errors="replace")


def policy(port, user, instance, stage="RCPT", sender="", helo=""):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rwb")
    reply = mp.policy_request(f, {
        "request": "smtpd_access_policy", "protocol_state": stage, "instance": instance,
        "sasl_username": user, "sender": sender, "recipient": "r@example.net",
        "client_address": "192.0.2.7", "size": "100", "helo_name": helo})
    sock.close()
    return reply and reply[0]


def message(port, user, tag, sender="", helo=""):
    """One transaction as Postfix sends it: RCPT, then END-OF-MESSAGE."""
    reply = policy(port, user, tag, sender=sender, helo=helo)
    if reply == "action=DUNNO":
        reply = policy(port, user, tag, "END-OF-MESSAGE", sender=sender, helo=helo)
    return reply


def shape(text):
    """show output without the times (they differ by the run's milliseconds)."""
    return re.sub(r"(time_to_full|locked_for)=[0-9.]+s", r"\1=T", text)


def scrape(st, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % st.port(name + "-metrics"),
                                timeout=10) as r:
        return r.read().decode()


def held(st, pf):
    """Queue ids postqueue -p marks as held ('!')."""
    res = subprocess.run(["postqueue", "-c", st.path(pf), "-p"], capture_output=True, text=True)
    return re.findall(r"^([0-9A-F]+)!", res.stdout, re.M), res.stdout


def test_config_errors(st):
    good = CONFIG % {"store": "memory", "sock": st.path("run", "x.ctl"), "mport": 1,
                     "notify": "/bin/true"}
    noexec = st.path("etc", "noexec.sh")
    with open(noexec, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(noexec, 0o644)
    q = "quarantine abuse = sasl_username "
    cases = [
        (q + "when=nosuch exceeded=3/10m", "when= names an unknown limit"),
        (q + "when=per_user exceeded=0/10m", "N must be 1 to 100"),
        (q + "when=per_user exceeded=3/0", "WINDOW must be 1s to 30d"),
        (q + "when=per_user exceeded=3", "exceeded= must be N/WINDOW"),
        (q + "when=per_user exceeded=3/10m when=per_user", "given twice"),
        (q + "when=per_user exceeded=3/10m notify=" + noexec, "not executable"),
        (q + "when=per_user exceeded=3/10m notify=relative.sh", "absolute path"),
        (q + "when=per_user exceeded=3/10m action=warn", "action must be hold, defer or reject"),
        (q + "when=per_user", "missing exceeded=N/WINDOW"),
        (q + "exceeded=3/10m", "missing when=LIMIT"),
        (q + "when=per_user exceeded=3/10m\n" + q + "when=per_user exceeded=3/10m",
         "duplicate quarantine name"),
        ("quarantine a/b = sasl_username when=per_user exceeded=3/10m", "quarantine names are"),
    ]
    for line, want in cases:
        body = re.sub(r"^quarantine .*$", lambda m: line, good, flags=re.M)
        path = mp.write_config(st, "bad", body)
        res = subprocess.run([mp.POLICYD, "-t", "-c", path], capture_output=True, text=True)
        tap.ok(res.returncode == 1 and want in res.stderr,
               "-t refuses %r: %s" % (line[len(q):][:50], want), diag=res.stdout + res.stderr)
    for old, new, want in (
            ("control_group = adm", "control_group = no-such-group", "unknown group"),
            (st.path("run", "x.ctl"), "/nonexistent/dir/x.ctl", "does not exist"),
            (st.path("run", "x.ctl"), "relative.ctl", "absolute path"),
            ("notify_timeout = 2s", "notify_timeout = 0", "notify_timeout must be"),
            (st.path("run", "x.ctl"), noexec, "exists and is not a socket")):
        path = mp.write_config(st, "bad", good.replace(old, new))
        res = subprocess.run([mp.POLICYD, "-t", "-c", path], capture_output=True, text=True)
        tap.ok(res.returncode == 1 and want in res.stderr, "-t refuses %s" % new,
               diag=res.stderr)
    tap.ok(os.path.exists(noexec), "-t removed no file")
    path = mp.write_config(st, "good", good)
    res = subprocess.run([mp.POLICYD, "-t", "-c", path], capture_output=True, text=True)
    tap.is_(res.returncode, 0, "-t accepts the good configuration", diag=res.stderr)
    os.chmod(path, 0o644)
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          mp.POLICYD, "-t", "-c", path], capture_output=True, text=True)
    tap.ok(res.returncode == 1 and "can give the socket only a group it is a member of"
           in res.stderr, "-t as a user outside control_group: it could not chown the socket",
           diag=res.stderr)


def test_both_stores(st):
    shows = {}
    for name, user in (("pdm", "svc-same"), ("pda", "svc-same")):
        port = st.port(name)
        replies = [message(port, user, "%s-%d" % (name, i)) for i in range(3)]
        tap.is_(replies[:2], ["action=DUNNO"] * 2, "%s: 2 messages fit 2/8s" % name)
        tap.ok(replies[2].startswith("action=450 4.7.1"), "%s: the 3rd is deferred" % name)
        rc, out, err = ctl(st, name, "show", user)
        tap.is_(rc, 0, "%s: ctl show answers" % name, diag=err)
        tap.ok(re.search(r"^limit=per_user rate=2/8s count=messages remaining=0 of=2 "
                         r"time_to_full=([0-9.]+)s key=svc-same$", out, re.M)
               and 0 < float(re.search(r"time_to_full=([0-9.]+)", out).group(1)) <= 8,
               "%s: show: nothing remains, full within 8s" % name, diag=out)
        shows[name] = out
        rc, out, _ = ctl(st, name, "top", "5")
        tap.ok(rc == 0 and re.search(r"^used=\d+% limit=per_user .* key=svc-same$", out, re.M),
               "%s: top lists the key" % name, diag=out)
        rc, out, _ = ctl(st, name, "reset", user)
        tap.is_((rc, out), (0, "reset keys=1\n"), "%s: reset deletes the key" % name)
        rc, out, _ = ctl(st, name, "show", user)
        tap.ok("remaining=2 of=2 time_to_full=0.0s" in out, "%s: full again after reset" % name,
               diag=out)
        tap.is_(message(port, user, name + "-after"), "action=DUNNO",
                "%s: a message passes after reset" % name)
    memory = [l for l in shape(shows["pdm"]).splitlines() if "hang" not in l and "flood" not in l
              and "per_bulk" not in l]
    tap.is_(memory, shape(shows["pda"]).splitlines(), "show: the memory and Redis stores "
            "give the same answer")


def remaining(st, name, value, limit):
    rc, out, _ = ctl(st, name, "show", value)
    m = re.search(r"^limit=%s .* remaining=(\d+) of=(\d+) " % limit, out, re.M)
    return m and int(m.group(1))


def test_same_answers(st):
    """Property: any sequence of messages and resets gets the same replies
    from the memory and the Redis store, and the same remaining counts,
    and both match the model (3 per hour, reset refills)."""
    counter = [0]

    @settings(max_examples=12, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(hs.lists(hs.tuples(hs.integers(0, 2), hs.sampled_from(["msg", "msg", "reset"])),
                    max_size=10))
    def prop(ops):
        counter[0] += 1
        senders = ["p%d-%d@example.org" % (counter[0], i) for i in range(3)]
        model = [3, 3, 3]
        for i, (who, op) in enumerate(ops):
            got = []
            for name in ("pdm", "pda"):
                if op == "reset":
                    rc, out, _ = ctl(st, name, "reset", senders[who])
                    got.append(rc)
                else:
                    got.append(message(st.port(name), "", "%s-%d-%d" % (name, counter[0], i),
                                       sender=senders[who]).split(" ")[0])
            want = 0 if op == "reset" else ("action=DUNNO" if model[who] else "action=450")
            assert got == [want, want], (ops, i, got, want)
            if op == "reset":
                model[who] = 3
            elif model[who]:
                model[who] -= 1
        for who in range(3):
            pair = [remaining(st, name, senders[who], "per_sender") for name in ("pdm", "pda")]
            assert pair == [model[who]] * 2, (ops, who, pair, model)

    try:
        prop()
        tap.ok(True, "property: memory and Redis give the same replies and the same "
               "remaining counts as the model, for any sequence of messages and resets")
    except AssertionError as e:
        tap.ok(False, "property: memory and Redis agree with the model", diag=str(e))


def test_stages(st):
    """Through Postfix: limits are checked at RCPT and charged at END-OF-DATA."""
    s = mp.login(st, "svc-stage", "pfa-submission")
    code, _ = s.mail("stage@planapulse.ai")
    code, _ = s.rcpt("st1@example.net")
    tap.is_(code, 250, "RCPT passes the check")
    s.rset()
    tap.is_(remaining(st, "pda", "svc-stage", "per_user"), 2, "a transaction reset after "
            "RCPT charged nothing")
    res, data = mp.transaction(s, "stage@planapulse.ai", ["st2@example.net"])
    tap.is_((res[0][0], data and data[0]), (250, 250), "a whole message is accepted")
    tap.is_(remaining(st, "pdb", "svc-stage", "per_user"), 1, "END-OF-DATA charged it "
            "(seen from the other node)")
    s.quit()


def test_reload(st, proc):
    path = st.path("etc", "pdm.conf")
    with open(path) as f:
        body = f.read()
    with open(path, "w") as f:
        f.write(body.replace("control_group = adm", "control_group = mail") +
                "quarantine late = sasl_username when=per_user exceeded=5/1h action=defer\n")
    tap.ok(mp.hup(proc, st, "pdm", 1), "pdm reloads")
    rc, out, _ = ctl(st, "pdm", "show", "svc-late")
    tap.ok(rc == 0 and "quarantine=late state=open strikes=0 of=5 window=3600s key=svc-late"
           in out, "a quarantine added by SIGHUP applies at once", diag=out)
    tap.ok(re.search(r"control_group.*restart|restart.*control_group", st.read_log("pdm")),
           "a changed control_group is said to need a restart")
    tap.is_(os.stat(st.path("run", "pdm.ctl")).st_gid, GID, "and the socket keeps its group")


REORDER = """\
listen = inet:127.0.0.1:{port}
store = %(store)s
workers = 1
control_socket = %(sock)s
"""


def eom_admitted(f, user, count):
    n = 0
    for i in range(count):
        reply = mp.policy_request(f, {"request": "smtpd_access_policy",
                                      "protocol_state": "END-OF-MESSAGE",
                                      "sasl_username": user, "client_address": "10.0.0.9",
                                      "recipient_count": "1", "instance": "%s-%d" % (user, i)})
        n += reply == ["action=DUNNO"]
    return n


def test_reorder(st, redis):
    """A rate's counter is known by its period, not by its place in the
    list (outside attacker of 2026-12-03: rates reordered by a reload, or
    removed, or an override listing them in another order, read another
    rate's counter: 108 of 100/1h admitted within a minute, or a 10/1m
    user locked out for 5 minutes)."""
    for store in ("memory", "redis://127.0.0.1:%d/3" % redis):
        name = "pdr" if store == "memory" else "pdrr"
        head = REORDER % {"store": store, "sock": st.path("run", name + ".ctl")}
        proc, port, conf = mp.start_policyd(st, name, head + "limit L = sasl_username "
                                            "rate=10/1m,100/1h\n")
        f = socket.create_connection(("127.0.0.1", port), timeout=10).makefile("rwb")
        first = (eom_admitted(f, "u1", 10), eom_admitted(f, "u2", 10))
        with open(conf, "w") as c:
            c.write(head.replace("{port}", str(port))
                    + "limit L = sasl_username rate=100/1h,10/1m\n")
        tap.ok(mp.hup(proc, st, name, 1), "%s: rates reordered by SIGHUP" % store)
        rc, out, _ = ctl(st, name, "show", "u1")
        m = re.search(r"rate=10/1m \S+ remaining=(\d+) of=10 time_to_full=([\d.]+)s", out)
        tap.ok(first == (10, 10) and m and m.group(1) == "0" and float(m.group(2)) <= 60,
               "%s: after the reorder, 10/1m still reads its own counter: remaining 0, full "
               "within its 60 s period (%s)" % (store, m and m.groups()), diag=out)
        with open(conf, "w") as c:
            c.write(head.replace("{port}", str(port)) + "limit L = sasl_username rate=100/1h\n")
        tap.ok(mp.hup(proc, st, name, 2), "%s: the 10/1m rate removed by SIGHUP" % store)
        more = eom_admitted(f, "u2", 120)
        tap.is_(more, 90, "%s: u2 sent 10 under 100/1h before; 90 more now, exactly 100 in the "
                "hour" % store)
        with open(conf, "w") as c:
            c.write(head.replace("{port}", str(port)) + "limit L = sasl_username "
                    "rate=10/1m,100/1h\noverride L u1 rate=100/1h,20/1m\n")
        tap.ok(mp.hup(proc, st, name, 3), "%s: an override listing the rates in another "
               "order" % store)
        rc, out, _ = ctl(st, name, "show", "u1")
        m = re.search(r"rate=20/1m \S+ remaining=(\d+) of=20 time_to_full=([\d.]+)s", out)
        tap.ok(m and float(m.group(2)) <= 60, "%s: the override's 20/1m reads the 1m counter "
               "(full within 60 s: %s)" % (store, m and m.groups()), diag=out)
        f.close()
        proc.terminate()
        proc.wait(timeout=10)
    path = st.path("etc", "two-periods.conf")
    with open(path, "w") as c:
        c.write("listen = inet:127.0.0.1:1\nlimit L = sasl_username rate=10/1m,20/60s\n")
    res = subprocess.run([mp.POLICYD, "-t", "-c", path], capture_output=True, text=True)
    tap.ok(res.returncode == 1 and "two rates over one period" in res.stderr,
           "-t refuses two rates over one period (1m and 60s)", diag=res.stderr)


def test_permissions(st):
    nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
    sock = st.path("run", "pdm.ctl")
    mode = os.stat(sock).st_mode & 0o777
    tap.is_((mode, os.stat(sock).st_gid), (0o660, GID), "the socket is 0660 root:adm")
    rc, _, err = ctl(st, "pdm", "show", "x", as_user=nobody)
    tap.ok(rc == 2 and "Permission denied" in err, "nobody: the file mode refuses", diag=err)
    os.chmod(sock, 0o666)
    rc, _, err = ctl(st, "pdm", "show", "x", as_user=nobody)
    tap.ok(rc == 1 and "permission denied" in err, "nobody with the mode opened: SO_PEERCRED "
           "refuses", diag=err)
    tap.ok(wait_for(lambda: "control: refused uid 65534" in st.read_log("pdm")),
           "the refusal is logged with the uid")
    rc, out, err = ctl(st, "pdm", "show", "x", as_user=["--reuid=65534", "--regid=65534",
                                                          "--groups=%d" % GID])
    tap.ok(rc == 0 and "limit=per_user" in out, "a member of control_group (supplementary) "
           "is served", diag=err)
    rc, out, err = ctl(st, "pdm", "show", "x", as_user=["--reuid=65534", "--regid=%d" % GID,
                                                          "--clear-groups"])
    tap.ok(rc == 0, "control_group as primary group is served", diag=err)
    os.chmod(sock, 0o660)


def test_quarantine(st, notified):
    before = {pf: held(st, pf)[0] for pf in ("pfa", "pfb")}
    results = []
    for i in range(5):
        s = mp.login(st, "svc-alerts", "pfa-submission")
        res, data = mp.transaction(s, "alerts@planapulse.ai", ["ops%d@example.net" % i])
        s.quit()
        results.append((res[0][0], data and data[0]))
    tap.is_(results[:2], [(250, 250)] * 2, "2 messages within the limit are sent")
    tap.is_([r[0] for r in results[2:4]], [450, 450], "the next 2 are deferred at RCPT "
            "(strikes 1 and 2)")
    tap.is_(results[4], (250, 250), "the 3rd strike locks: Postfix accepts the message to hold")
    log = st.read_log("pda")
    tap.ok("quarantine abuse: locked key=svc-alerts after 3 strikes in 600s (limit per_user) "
           "action=hold" in log, "one lock line", diag=log[-2000:])
    tap.ok(re.search(r"quarantine abuse: hold key=svc-alerts stage=RCPT ", log),
           "the hold is decided at RCPT")
    tap.ok(re.search(r'^mxkit_policyd_quarantine_locks_total\{quarantine="abuse",'
                     r'action="hold"\} 1$', scrape(st, "pda"), re.M), "lock metric is 1")
    tap.ok(wait_for(lambda: os.path.exists(notified) and open(notified).read()
                    == "svc-alerts abuse\n"),
           "notify ran once with the key and the quarantine's name")
    s = mp.login(st, "svc-alerts", "pfb-submission")
    res, data = mp.transaction(s, "alerts@planapulse.ai", ["ops-b@example.net"])
    s.quit()
    tap.is_((res[0][0], data and data[0]), (250, 250), "node B: accepted to hold as well")
    tap.ok(re.search(r"quarantine abuse: hold key=svc-alerts stage=RCPT", st.read_log("pdb")),
           "node B honours the lock set by node A")
    for pf, want in (("pfa", 1), ("pfb", 1)):
        ids = wait_for(lambda: len(held(st, pf)[0]) - len(before[pf]) >= want and held(st, pf)[0])
        tap.is_(len(ids or []) - len(before[pf]), want, "%s: postqueue -p shows %d held "
                "message ('!')" % (pf, want), diag=held(st, pf)[1])
    rc, out, _ = ctl(st, "pdb", "show", "svc-alerts")
    tap.ok(rc == 0 and re.search(r"^quarantine=abuse state=locked action=hold locked_for=\d+s "
                                 r"key=svc-alerts$", out, re.M), "ctl show on node B: locked",
           diag=out)
    rc, out, _ = ctl(st, "pdb", "top")
    tap.ok(rc == 0 and "locked=abuse:svc-alerts" in out, "ctl top lists the lock", diag=out)
    rc, out, _ = ctl(st, "pdb", "release", "svc-alerts")
    tap.is_((rc, out), (0, "quarantine=abuse state=released\n"), "ctl release on node B")
    rc, out, _ = ctl(st, "pda", "show", "svc-alerts")
    tap.ok("quarantine=abuse state=open strikes=0 of=3" in out, "node A sees it released",
           diag=out)
    wait = float(re.search(r"time_to_full=([0-9.]+)s", out).group(1))
    time.sleep(min(wait, 8) / 2 + 0.2)          # one message refilled (interval 4s)
    sunk = len(st.sink_messages())
    s = mp.login(st, "svc-alerts", "pfa-submission")
    res, data = mp.transaction(s, "alerts@planapulse.ai", ["ops-after@example.net"])
    s.quit()
    tap.is_((res[0][0], data and data[0]), (250, 250), "after release: the message is accepted")
    tap.ok(wait_for(lambda: len(st.sink_messages()) > sunk), "after release: it is delivered, "
           "not held")
    tap.is_(len(held(st, "pfa")[0]) - len(before["pfa"]), 1, "after release: nothing more held")


def test_hostile(st):
    port = st.port("pdm")
    out = raw_ctl(st, "pdm", b"show " + b"k" * 100000 + b"\n")
    tap.ok(out.startswith("error: request longer"), "100 KB key: a clear error", diag=out[:200])
    rc, _, err = ctl(st, "pdm", "show", "k" * 100000)
    tap.ok(rc == 1 and "longer than 8192 bytes" in err, "ctl refuses a 100 KB key itself",
           diag=err)
    # the daemon's own limit is the documented one (it took keys up to
    # about 8,950 bytes, which no policy request can carry)
    for n, want in ((8192, "ok\n"), (8193, "error: KEY longer than 8192 bytes"),
                    (8250, "error: KEY longer than 8192 bytes")):
        out = raw_ctl(st, "pdm", b"reset " + b"k" * n + b"\n")
        tap.ok(out.startswith(want), "raw socket: a %d-byte key: %s" % (n, want.strip()),
               diag=out[:200])
    rc, out, _ = ctl(st, "pdm", "show", "k" * 8000)
    tap.ok(rc == 0 and "~sha256:" in out, "an 8000-byte key is shown under its hashed key",
           diag=out[:300])
    # a second request on the line after the first was ignored in silence
    out = raw_ctl(st, "pdm", b"show a\nreset b\n")
    tap.is_(out, "error: one request per connection (bytes after its line end)\n",
            "two requests on one connection: refused, neither run")
    out = raw_ctl(st, "pdm", b"show a\0b\n")
    tap.is_(out, "error: NUL byte in the request\n", "NUL byte: refused")
    for n in ("0", "-1", "1001", "99999999999999999999999", "x"):
        rc, _, err = ctl(st, "pdm", "top", n)
        tap.ok(rc == 1 and "N must be a number from 1 to 1000" in err, "top %s refused" % n[:12],
               diag=err)
    rc, out, _ = ctl(st, "pdm", "top", "1000")
    tap.ok(rc == 0 and out.endswith("shown=%s\n" % re.search(r"shown=(\d+)", out).group(1)),
           "top 1000 answers", diag=out[-200:])
    rc, out, _ = ctl(st, "pdm", "release", "never-seen")
    tap.is_((rc, out), (0, "not locked by any quarantine; strikes cleared\n"),
            "release of an unknown key")
    rc, _, err = ctl(st, "pdm", "frobnicate", "x")
    tap.ok(rc == 1 and "unknown command (show KEY, reset KEY, top [N], release KEY)" in err,
           "an unknown command: a clear error", diag=err)
    silent = [raw_ctl(st, "pdm", b"", read=False) for _ in range(3)]
    t0 = time.monotonic()
    rc, out, _ = ctl(st, "pdm", "show", "x")
    # blocked, it would wait for their 5 s drop
    tap.ok(rc == 0 and time.monotonic() - t0 < 4.5, "silent clients do not block others")
    for s in silent:
        s.settimeout(10)
        tap.is_(s.recv(100), b"", "a silent client is dropped after 5s")
        s.close()
    slow = raw_ctl(st, "pdm", b"s", read=False)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        try:
            # dropped: end of file, or a reset when a byte it had not
            # read was still in its socket as it closed
            if select.select([slow], [], [], 1.0)[0] and slow.recv(100) == b"":
                break
        except ConnectionResetError:
            break
        try:
            slow.send(b"x")             # one byte a second: never a whole request
        except OSError:
            break
    tap.ok(time.monotonic() - t0 < 11, "a client sending a byte a second is dropped after 5s "
           "(%.1fs), not kept alive by each byte" % (time.monotonic() - t0))
    slow.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    many, refused = [], 0
    for _ in range(1000):
        many.append(raw_ctl(st, "pdm", b"", read=False))
    tap.is_(policy(port, "svc-many", "m1"), "action=DUNNO", "1000 control connections: "
            "policy requests are still answered")
    for s in many:
        s.settimeout(10)
        try:
            if s.recv(200).startswith(b"error: too many control connections"):
                refused += 1
        except OSError:
            pass
        s.close()
    tap.ok(refused >= 1000 - 8, "1000 connections: all but 8 told 'too many' (%d)" % refused)
    lines = st.read_log("pdm").count("control: 8 connections open; refusing uid 0")
    tap.ok(1 <= lines <= 20, "and logged at most once a second (%d lines)" % lines)
    rc, out, _ = ctl(st, "pdm", "show", "x")
    tap.is_(rc, 0, "ctl answers again after the flood")
    lingering = raw_ctl(st, "pdm", b"top 5\n", read=False)   # never reads, never closes
    rc, _, _ = ctl(st, "pdm", "show", "x")
    tap.is_(rc, 0, "a client that does not read its answer blocks nobody")
    lingering.close()


def test_notify(st):
    port = st.port("pdm")
    tap.is_(message(port, "svc-n", "n1", helo="Bulk.Example.org"), "action=DUNNO",
            "per_bulk: the first message fits")
    reply = message(port, "svc-n", "n2", helo="Bulk.Example.org")
    tap.ok(reply.startswith("action=450 4.7.1 bulk.example.org is locked by quarantine hang"),
           "the first strike locks (exceeded=1): the first quarantine's action", diag=reply)
    log = lambda: st.read_log("pdm")  # noqa: E731
    tap.ok(wait_for(lambda: re.search(r"quarantine flood: notify \(pid \d+\) done", log()),
                    timeout=10), "a notify flooding its output finishes (to /dev/null)")
    tap.ok(wait_for(lambda: re.search(r"quarantine hang: notify \(pid \d+\) killed after 2s",
                                      log()), timeout=10), "a hanging notify is killed")
    pid = int(re.search(r"quarantine hang: notify \S+ started \(pid (\d+)\)", log()).group(1))
    tap.ok(wait_for(lambda: not os.path.exists("/proc/%d" % pid)), "and reaped (no zombie)")
    t0 = time.monotonic()
    tap.is_(policy(port, "svc-n2", "n3"), "action=DUNNO", "the daemon answers meanwhile")
    tap.ok(time.monotonic() - t0 < 5, "without waiting for notify")
    rc, out, _ = ctl(st, "pdm", "top", "5")
    tap.ok(rc == 0 and "locked=flood:bulk.example.org " in out
           and "locked=hang:bulk.example.org " in out, "memory store: top lists both locks",
           diag=out)
    rc, out, _ = ctl(st, "pdm", "release", "BULK.example.org.")
    tap.is_((rc, sorted(out.splitlines())), (0, ["quarantine=flood state=released",
                                                 "quarantine=hang state=released"]),
            "memory store: release (any spelling of the name) lifts both locks")
    rc, out, _ = ctl(st, "pdm", "show", "bulk.example.org")
    tap.ok("quarantine=hang state=open" in out and "quarantine=flood state=open" in out,
           "memory store: show says open", diag=out)


def test_redis_down(st):
    port = st.port("pda")
    st.procs["redis"].send_signal(signal.SIGSTOP)   # accepts, never answers
    t0 = time.monotonic()
    rc, _, err = ctl(st, "pda", "top", "5")
    tap.ok(rc == 1 and "store redis unavailable" in err and time.monotonic() - t0 < 4,
           "top against a frozen Redis: an error within the watchdog's second (%.1fs)"
           % (time.monotonic() - t0), diag=err)
    st.procs["redis"].send_signal(signal.SIGCONT)
    st.stop_redis()
    replies = [message(port, "svc-down", "d%d" % i) for i in range(5)]
    tap.is_(replies[:2], ["action=DUNNO"] * 2, "redis down: the local store counts (2 fit)")
    tap.ok(replies[4].startswith("action=HOLD svc-down is locked"), "redis down: the third "
           "strike locks in the local store", diag=repr(replies))
    rc, _, err = ctl(st, "pda", "show", "svc-down")
    tap.ok(rc == 1 and "store redis unavailable" in err, "show: the store is unavailable",
           diag=err)
    rc, _, err = ctl(st, "pda", "release", "svc-down")
    tap.ok(rc == 1 and "released in this node's local store only" in err,
           "release while redis is down says what it did", diag=err)
    reply = message(port, "svc-down", "d9")
    tap.ok(not reply.startswith("action=HOLD"), "the local lock is gone", diag=reply)
    st.start_redis()
    tap.ok(wait_for(lambda: st.read_log("pda").count("redis: connected") >= 2, timeout=10),
           "pda reconnects")


with Stack("policyd-ctl") as st:
    tap.stack = st
    st.users["svc-alerts"] = "svc-alerts-secret"
    st.users["svc-stage"] = "svc-stage-secret"
    os.makedirs(st.path("run"), exist_ok=True)
    os.chmod(st.path("run"), 0o755)
    notified = st.path("run", "notified")
    notify = script(st, "notify.sh", 'echo "$1 $2" >> %s\n' % notified)
    hang = script(st, "hang.sh", "exec sleep 1000\n")
    flood = script(st, "flood.sh", "head -c 20000000 /dev/zero\n")
    test_config_errors(st)
    st.start_dovecot()
    st.start_sink()
    redis = st.start_redis()
    procs = {}
    for name, store in (("pdm", "memory"), ("pda", "redis://127.0.0.1:%d" % redis),
                        ("pdb", "redis://127.0.0.1:%d" % redis)):
        body = CONFIG % {"store": store, "sock": st.path("run", name + ".ctl"),
                         "mport": st.port(name + "-metrics"), "notify": notify}
        if name == "pdm":
            body += HOSTILE % {"hang": hang, "flood": flood}
        procs[name], port, _ = mp.start_policyd(st, name, body)
        if name != "pdm":
            st.start_postfix(name="pf" + name[-1], submission=mp.restrictions(port))
    for name in ("pda", "pdb"):
        tap.ok(wait_for(lambda: "redis: connected" in st.read_log(name)),
               "%s connected to redis-server" % name)
    test_both_stores(st)
    test_same_answers(st)
    test_stages(st)
    test_permissions(st)
    test_quarantine(st, notified)
    test_hostile(st)
    test_notify(st)
    test_redis_down(st)
    test_reload(st, procs["pdm"])
    test_reorder(st, redis)
    for name, proc in procs.items():
        tap.ok(proc.poll() is None, "%s is still running" % name)

sys.exit(tap.done())
