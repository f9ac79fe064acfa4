#!/usr/bin/python3
"""The daemons started as an unprivileged user, as containers start them
(Kubernetes runAsUser, no passwd entry, fsGroup), and a read-only root: -t
must refuse what the start then dies on, and the start must work where it
can. Found by an outside tester acting as a Kubernetes operator:

  1. user = NAME while started as another unprivileged uid: -t said OK, the
     start died ("cannot become"); user = the very user it runs as died too
     (setgroups EPERM). Now -t refuses the first, the second starts.
  2. pid_file in a directory this user cannot write: -t said OK (all four).
  3. a UNIX socket (milter socket, policyd listen) in a directory this user
     cannot write: -t said OK.
  4. lmtp-webhook-spool: a spool_dir this user cannot make or write, or on
     a read-only mount (root too), and a runner.lock that is a symbolic
     link or a directory: -t said OK, run died.
  5. lmtp-webhook-spool flush from another PID namespace (another container
     of the pod, sharing the spool's volume) signalled whatever process had
     the runner's pid there (killing it) and said "flush requested".
  6. A reload naming a secret_file that cannot be read yet (the Secret not
     mounted yet) dropped the working secret: nothing was posted.
"""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack, free_port  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import Receiver, make_secret, spool_body, spool_event_bytes  # noqa: E402

MILTER = build_path("milter-dkim", "milter-dkim")
KEYGEN = build_path("milter-dkim", "milter-dkim-keygen")
POLICYD = build_path("policyd-ratelimit", "policyd-ratelimit")
SHIM = build_path("proxyv2-shim", "proxyv2-shim")
SPOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
POD = ["setpriv", "--reuid=10001", "--regid=10001", "--groups=10001", "--inh-caps=-all"]


def as_pod(argv, timeout=10, uid=10001):
    pod = [a.replace("10001", str(uid)) for a in POD]
    try:
        return subprocess.run(pod + argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:      # a daemon that started: still running
        return subprocess.CompletedProcess(argv, "running", e.stdout or "", e.stderr or "")


def configs(st):
    """(name, program, configuration text) of the four daemons, minimal."""
    keys = st.path("keys")
    os.makedirs(keys, exist_ok=True)
    if not os.path.exists(os.path.join(keys, "s1.private")):
        subprocess.run([KEYGEN, "-d", "pod.test", "-s", "s1", "-D", keys], check=True,
                       capture_output=True)
    os.chown(os.path.join(keys, "s1.private"), 10001, 10001)
    with open(st.path("kt"), "w") as f:
        f.write("k pod.test:s1:%s/s1.private\n" % keys)
    with open(st.path("st"), "w") as f:
        f.write("*@pod.test k\n")
    spool = st.path("spool")
    os.makedirs(spool, exist_ok=True)
    os.chown(spool, 10001, 10001)
    secret = st.path("secret")
    with open(secret, "w") as f:
        f.write(make_secret() + "\n")
    os.chmod(secret, 0o644)
    return [
        ("milter-dkim", MILTER, "socket = inet:%d@127.0.0.1\nkey_table = %s\n"
         "signing_table = refile:%s\n" % (free_port(), st.path("kt"), st.path("st"))),
        ("policyd-ratelimit", POLICYD, "listen = inet:127.0.0.1:%d\n"
         "limit a = sasl_username rate=30/1m\n" % free_port()),
        ("proxyv2-shim", SHIM, "listener = 127.0.0.1:%d backend=127.0.0.1:587 mode=xclient "
         "trusted=127.0.0.1/32\n" % free_port()),
        ("lmtp-webhook-spool", SPOOL, "spool_dir = %s\nsecret_file = %s\n" % (spool, secret)),
    ]


def start_args(prog):
    return ["-f", "run"] if prog == SPOOL else ["-f"]


def test_user_and_pid_file(st):
    ro = st.path("ro")
    os.makedirs(ro, exist_ok=True)
    os.chmod(ro, 0o755)                               # root's: the pod's user cannot write
    for name, prog, text in configs(st):
        for extra, what in (("user = nobody\n", "user = nobody, started as uid 10001"),
                            ("pid_file = %s/%s.pid\n" % (ro, name),
                             "pid_file in a directory uid 10001 cannot write")):
            conf = st.path("%s-%s.conf" % (name, what[:4]))
            with open(conf, "w") as f:
                f.write(text + extra)
            check = as_pod([prog, "-t", "-c", conf])
            start = as_pod([prog, "-c", conf] + start_args(prog), timeout=3)
            tap.ok(check.returncode == 1 and start.returncode == 1
                   and ("cannot become" in check.stderr or "cannot create" in check.stderr),
                   "%s, %s: -t refuses it, as the start does (-t said OK)" % (name, what),
                   diag="-t %r %s\nstart %r %s" % (check.returncode, check.stderr,
                                                   start.returncode, start.stderr))
        # user = the user it is started as: nothing to become, it starts
        conf = st.path("%s-self.conf" % name)
        with open(conf, "w") as f:
            f.write(text.replace(st.path("spool"), st.path("spool-nobody")) + "user = nobody\n")
        if prog == SPOOL:
            os.makedirs(st.path("spool-nobody"), exist_ok=True)
            os.chown(st.path("spool-nobody"), 65534, 65534)
        key = st.path("keys", "s1.private")
        os.chown(key, 65534, 65534)                   # the key is the running user's
        check = as_pod([prog, "-t", "-c", conf], uid=65534)
        start = as_pod([prog, "-c", conf] + start_args(prog), timeout=3, uid=65534)
        os.chown(key, 10001, 10001)
        tap.ok(check.returncode == 0 and start.returncode == "running",
               "%s, user = nobody started as nobody: -t OK and it runs (died: cannot become "
               "\"nobody\": Operation not permitted)" % name,
               diag="-t %r %s\nstart %r %s" % (check.returncode, check.stderr,
                                               start.returncode, start.stderr))


def test_unix_sockets(st):
    ro = st.path("ro")
    for name, prog, text in configs(st)[:2]:
        sock = "%s/%s.sock" % (ro, name)
        text = (text.replace(text.split("\n")[0], "socket = unix:%s" % sock)
                if prog == MILTER else text.replace(text.split("\n")[0], "listen = unix:%s" % sock))
        conf = st.path("%s-unix.conf" % name)
        with open(conf, "w") as f:
            f.write(text)
        check = as_pod([prog, "-t", "-c", conf])
        tap.ok(check.returncode == 1 and "cannot create a socket in" in check.stderr,
               "%s: a UNIX socket in a directory uid 10001 cannot write: -t refuses it" % name,
               diag=check.stderr)


def spool_conf(st, name, spool, extra=""):
    conf = st.path(name)
    with open(conf, "w") as f:
        f.write("spool_dir = %s\nsecret_file = %s\n%s" % (spool, st.path("secret"), extra))
    return conf


def test_spool_dir(st):
    root_only = st.path("rootonly")
    os.makedirs(os.path.join(root_only, "exists"), exist_ok=True)
    for spool, what in ((root_only + "/new", "a spool_dir it cannot make (its parent root's)"),
                        (root_only + "/exists", "an existing spool_dir root's, mode 0755")):
        conf = spool_conf(st, "sd-%s.conf" % os.path.basename(spool), spool)
        check = as_pod([SPOOL, "-t", "-c", conf])
        start = as_pod([SPOOL, "-c", conf, "-f", "run"], timeout=3)
        tap.ok(check.returncode == 1 and "this user (uid 10001) cannot" in check.stderr
               and start.returncode == 1, "lmtp-webhook-spool as uid 10001, %s: -t refuses "
               "it, as run does" % what, diag=check.stderr + start.stderr)
    for kind in ("symlink", "dir"):
        spool = st.path("lock-" + kind)
        os.makedirs(spool, exist_ok=True)
        lock = os.path.join(spool, "runner.lock")
        if kind == "symlink":
            os.symlink("/etc/hostname", lock)
        else:
            os.makedirs(lock)
        check = subprocess.run([SPOOL, "-t", "-c", spool_conf(st, "lk-%s.conf" % kind, spool)],
                               capture_output=True, text=True, timeout=10)
        tap.ok(check.returncode == 1 and "runner.lock is" in check.stderr,
               "runner.lock a %s: -t refuses it (run died on it)" % kind, diag=check.stderr)
    # a read-only mount, as root: a private mount namespace, the spool's
    # parent bound read-only
    ro_parent = st.path("romount")
    os.makedirs(ro_parent, exist_ok=True)
    conf = spool_conf(st, "ro.conf", ro_parent + "/spool")
    res = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind %s %s && mount -o "
                          "remount,bind,ro %s && %s -t -c %s" % (ro_parent, ro_parent, ro_parent,
                                                                 SPOOL, conf)],
                         capture_output=True, text=True, timeout=20)
    tap.ok(res.returncode == 1 and "Read-only file system" in res.stderr,
           "root, spool_dir on a read-only mount: -t refuses it", diag=res.stderr)


def test_flush_other_namespace(st):
    """The runner in its own PID namespace (a sidecar), flush from another
    (the mail container), where the runner's pid is a bystander's."""
    spool = st.path("ns-spool")
    os.makedirs(spool, exist_ok=True)
    os.chown(spool, 10001, 10001)
    conf = spool_conf(st, "ns.conf", spool)
    log = open(st.path("ns-runner.log"), "w")
    side = subprocess.Popen(["unshare", "-p", "-f", "--mount-proc"] + POD
                            + [SPOOL, "-c", conf, "-f", "run"], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        if not tap.ok(wait_for(lambda: os.path.exists(os.path.join(spool, "runner.lock"))
                               and open(os.path.join(spool, "runner.lock")).read().strip(),
                               timeout=10), "a runner in its own PID namespace"):
            return
        data = spool_event_bytes("msg_wait1", "http://127.0.0.1:9/none", spool_body("w"),
                                 attempts=1, next_attempt=int(time.time()) + 3600)
        with open(os.path.join(spool, "tmp", "put"), "wb") as f:
            f.write(data)
        os.chown(os.path.join(spool, "tmp", "put"), 10001, 10001)
        os.rename(os.path.join(spool, "tmp", "put"), os.path.join(spool, "active", "msg_wait1"))
        script = ("%s sleep 30 & v=$!; %s %s -c %s flush; echo rc=$?; sleep 0.3; "
                  "kill -0 $v && echo bystander-alive; kill $v" % (
                      " ".join(POD), " ".join(POD), SPOOL, conf))
        res = subprocess.run(["unshare", "-p", "-f", "--mount-proc", "sh", "-c", script],
                             capture_output=True, text=True, timeout=20)
        tap.ok("rc=1" in res.stdout and "cannot see" in res.stderr
               and "bystander-alive" in res.stdout,
               "flush from another PID namespace: refused, saying why, and the process with "
               "the runner's pid there is not signalled (was killed by SIGUSR1)",
               diag=res.stdout + res.stderr)
    finally:
        side.kill()
        side.wait()
        log.close()


def test_reload_secret(st):
    rx = Receiver()
    spool = st.path("rl-spool")
    os.makedirs(spool, exist_ok=True)
    conf = spool_conf(st, "rl.conf", spool)
    proc = subprocess.Popen([SPOOL, "-c", conf, "-f", "run"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)
        with open(conf, "w") as f:                  # the next Secret, not mounted yet
            f.write("spool_dir = %s\nsecret_file = %s\n" % (spool, st.path("secret-v2")))
        proc.send_signal(1)
        time.sleep(0.5)
        data = spool_event_bytes("msg_after_hup", "http://127.0.0.1:%d/h" % rx.port,
                                 spool_body("after"))
        with open(os.path.join(spool, "tmp", "put"), "wb") as f:
            f.write(data)
        os.rename(os.path.join(spool, "tmp", "put"), os.path.join(spool, "active", "msg_after_hup"))
        tap.ok(wait_for(lambda: len(rx.events()) == 1, timeout=10),
               "a reload naming a secret_file not there yet keeps the running secret: the "
               "next event is posted (nothing was, until the new file came)")
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
        rx.stop()
    tap.ok("the new secret_file cannot be read now" in out
           and "keeping the previous configuration" in out,
           "the reload says why it kept the previous configuration", diag=out)


with Stack("container-user") as st:
    tap.stack = st
    os.chmod(st.dir, 0o755)
    test_user_and_pid_file(st)
    test_unix_sockets(st)
    test_spool_dir(st)
    test_flush_other_namespace(st)
    test_reload_secret(st)
    shutil.rmtree(st.path("spool-nobody"), ignore_errors=True)

sys.exit(tap.done())
