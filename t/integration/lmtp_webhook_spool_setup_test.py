#!/usr/bin/python3
"""lmtp-webhook-spool's start-up as an unlucky operator meets it (an
outside tester's findings of 2026-12-03; -t is the whole start-up but
binding, so each case is run through -t and a start):

  - spool_dir not made yet (its parent is) with user = nobody: the
    start made it root's 0700, became nobody and could use neither it
    nor its subdirectories ("cannot create .../tmp" once, then every
    second a false "runner.lock was removed and cannot be made
    again"); the next -t and start refused the directory it had made
    itself. It is now made for nobody, as Postfix makes its queue for
    mail_owner; a runner that cannot reach its spool says so, once.
  - user = nobody and a global secret_file root:root 0600: -t said OK
    (it reads as root), the daemon logged every second that it could
    not read it and posted nothing. -t and the start refuse it now; the
    same file is good for a daemon with no user (it stays root for it).
  - ca_file was never looked at: missing, relative, not a certificate,
    a directory, or one user nobody cannot read passed -t and the
    start, and every HTTPS post failed. Each is refused now.
  - secret_file readable by every user (0644) was taken without a word:
    a warning now (not a refusal: a running setup keeps posting);
    dead_letter_after = 500ms dead-lettered each event at its first
    failed attempt: under 10s is refused, as a bare number is.
  - a spool_dir nobody owns, inside a directory only root may pass
    (0700, as /root), passed -t on its mode bits: user nobody never
    reached it. Refused now, made or not made yet.
  - a configuration without spool_dir (its default) crashed -t, the
    start and a reload (SIGSEGV: the line of a setting not written was
    looked up); a file emptied under a running daemon killed it at the
    next SIGHUP. And a reload took a secret_file user nobody cannot
    read, which -t refuses: posting stopped. Each reload is refused now,
    the previous configuration kept.
"""

import base64
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, run, tap, wait_for  # noqa: E402
from mxwebhook import make_secret  # noqa: E402

SPOOL_TOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
NOBODY = pwd.getpwnam("nobody")
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


def write(st, name, text, mode=0o644):
    path = st.path("etc", name)
    os.makedirs(st.path("etc"), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def secret(st, name="secret", mode=0o640, group=NOBODY.pw_gid):
    """The global secret, root's and readable by nobody's group."""
    path = write(st, name, make_secret() + "\n", mode)
    os.chown(path, 0, group)
    return path


def check(conf):
    return run([SPOOL_TOOL, "-t", "-c", conf], timeout=30)


def start(st, conf, name):
    """run -f under the stack: (proc, log name) once it says "delivering", or (None, log)."""
    proc = st.start_daemon(name, [SPOOL_TOOL, "-c", conf, "-f", "run"])
    wait_for(lambda: "delivering" in st.read_log(name) or proc.poll() is not None, timeout=10)
    return (proc if proc.poll() is None else None), name


def stop(proc):
    proc.terminate()
    return proc.wait(timeout=30)


def test_spool_dir_made_for_user(st):
    spool = st.path("new", "spool")
    os.makedirs(st.path("new"))
    conf = write(st, "made.conf", "spool_dir = %s\nsecret_file = %s\nuser = nobody\n"
                 % (spool, secret(st)))
    res = check(conf)
    tap.ok(res.returncode == 0, "spool_dir not made yet, user = nobody: -t OK",
           diag=res.stdout + res.stderr)
    proc, log = start(st, conf, "made1")
    tap.ok(proc is not None, "the first start runs", diag=st.read_log(log))
    time.sleep(2.5)                     # runner.lock is looked at once a second
    owners = {}
    for sub in ("", "tmp", "active", "dead", "runner.lock"):
        s = os.stat(os.path.join(spool, sub))
        owners[sub or "."] = (s.st_uid, s.st_gid)
    tap.is_(set(owners.values()), {(NOBODY.pw_uid, NOBODY.pw_gid)},
            "spool_dir, its subdirectories and runner.lock are nobody's", diag=repr(owners))
    tap.is_(os.stat(spool).st_mode & 0o7777, 0o700, "spool_dir is made 0700")
    text = st.read_log(log)
    tap.ok("Permission denied" not in text and "runner.lock" not in text,
           "no \"cannot create\", no runner.lock complaint", diag=text)
    if proc:
        stop(proc)
    res = check(conf)
    tap.ok(res.returncode == 0, "-t again: OK (it refused the directory the start made)",
           diag=res.stdout + res.stderr)
    proc, log = start(st, conf, "made2")
    tap.ok(proc is not None, "a second start runs", diag=st.read_log(log))
    if proc is None:
        return
    # the spool taken away under it: said once, and truly (it was said
    # every second as "was removed and cannot be made again")
    os.chown(spool, 0, 0)
    time.sleep(3.5)
    text = st.read_log(log)
    lines = [ln for ln in text.splitlines() if "runner.lock" in ln]
    tap.ok(len(lines) == 1 and "cannot be looked at: Permission denied" in lines[0]
           and "removed" not in lines[0],
           "a spool the runner cannot search: one true warning about runner.lock",
           diag=text)
    os.chown(spool, NOBODY.pw_uid, NOBODY.pw_gid)
    stop(proc)


def spool(st):
    """An existing spool of nobody's."""
    path = st.path("spool")
    os.makedirs(path, exist_ok=True)
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    return path


def refused(st, conf, words, name):
    """-t and the start both exit 1 with words in their errors."""
    res = check(conf)
    tap.ok(res.returncode == 1 and words in res.stderr, name + ": -t refuses it",
           diag=res.stdout + res.stderr)
    try:
        res = run([SPOOL_TOOL, "-c", conf, "-f", "run"], timeout=15)
        got, text = res.returncode, res.stdout + res.stderr
    except subprocess.TimeoutExpired:
        got, text = None, "it started and ran"
    tap.ok(got == 1 and words in text, name + ": the start refuses it", diag=text)


def test_root_only_secret(st):
    path = secret(st, "root-only", mode=0o600, group=0)
    conf = write(st, "rootsecret.conf", "spool_dir = %s\nsecret_file = %s\nuser = nobody\n"
                 % (spool(st), path))
    refused(st, conf, "secret_file %s: user nobody cannot read it (Permission denied)" % path,
            "user = nobody, secret_file root:root 0600")
    conf = write(st, "rootsecret-nouser.conf", "spool_dir = %s\nsecret_file = %s\n"
                 % (spool(st), path))
    res = check(conf)
    tap.ok(res.returncode == 0 and res.stderr == "",
           "no user: a root-only secret_file is good (root reads it)",
           diag=res.stdout + res.stderr)


def test_ca_file(st):
    base = "spool_dir = %s\nsecret_file = %s\n" % (spool(st), secret(st))
    notcert = write(st, "notacert.pem", "garbage\n")
    rootca = st.path("etc", "root-ca.pem")
    shutil.copy(SYSTEM_CA, rootca)
    os.chmod(rootca, 0o600)
    cases = [
        (st.path("etc", "nosuch.pem"), "", "No such file or directory"),
        ("ca.pem", "", "ca_file: \"ca.pem\" is not an absolute path"),
        (notcert, "", "holds no PEM certificate"),
        (st.path("etc"), "", "is a directory, not a file of PEM certificates"),
        (rootca, "user = nobody\n", "user nobody cannot read it (Permission denied)"),
    ]
    for path, more, words in cases:
        conf = write(st, "ca.conf", base + more + "ca_file = %s\n" % path)
        refused(st, conf, words, "ca_file %s%s" % (os.path.basename(path) or path,
                                                  " (" + more.strip() + ")" if more else ""))
    for path, more in ((SYSTEM_CA, "user = nobody\n"), (rootca, "")):
        conf = write(st, "ca-good.conf", base + more + "ca_file = %s\n" % path)
        res = check(conf)
        tap.ok(res.returncode == 0, "ca_file %s%s: OK" % (os.path.basename(path), " ("
                                                           + more.strip() + ")" if more
                                                           else " (root's, no user)"),
               diag=res.stdout + res.stderr)


def test_secret_mode_and_dead_after(st):
    world = secret(st, "world", mode=0o644)
    conf = write(st, "world.conf", "spool_dir = %s\nsecret_file = %s\n" % (spool(st), world))
    res = check(conf)
    tap.ok(res.returncode == 0 and "secret_file %s is readable by every user (mode 0644)"
           % world in res.stderr, "secret_file 0644: -t warns (and says OK)",
           diag=res.stdout + res.stderr)
    tap.ok("whsec_" not in res.stdout + res.stderr, "the warning holds no secret")
    tap.ok("too short" not in res.stderr, "a 32-byte secret is not called short")
    # helper-121: "changeme" (6 bytes), whsec_AA== (1 byte), the Redis
    # password's file named instead: each signed every event unsaid
    for label, text in (("changeme", "changeme\n"), ("whsec_AQ==", "whsec_AQ==\n"),
                        ("18 bytes", "whsec_%s\n" % base64.b64encode(b"r" * 18).decode())):
        weak = write(st, "weak.secret", text, 0o640)
        os.chown(weak, 0, NOBODY.pw_gid)
        conf = write(st, "weak.conf", "spool_dir = %s\nsecret_file = %s\n" % (spool(st), weak))
        res = check(conf)
        tap.ok(res.returncode == 0 and "too short to resist guessing" in res.stderr
               and text.strip() not in res.stdout + res.stderr,
               "a secret of %s: -t warns (it still signs), without the secret" % label,
               diag=res.stdout + res.stderr)
        proc, name = start(st, conf, "weak-%d" % len(text))
        tap.ok(proc is not None and wait_for(lambda: "too short to resist guessing"
                                             in st.read_log(name), timeout=5),
               "a secret of %s: the running daemon warns too" % label,
               diag=st.read_log(name)[-600:])
        if proc:
            stop(proc)
    # helper-124: "====" was read as one zero byte, "AAAA" as three; a key
    # of zero bytes signs as the empty key does, so anyone forged events
    for label, text, words in (("====", "====\n", "secret: not valid base64"),
                               ("AAAA", "AAAA\n", "every byte is zero"),
                               ("whsec_AA==", "whsec_AA==\n", "every byte is zero")):
        bad = write(st, "zero.secret", text, 0o640)
        os.chown(bad, 0, NOBODY.pw_gid)
        conf = write(st, "zero.conf", "spool_dir = %s\nsecret_file = %s\n" % (spool(st), bad))
        res = check(conf)               # as for any secret that cannot be read
        tap.ok(words in res.stderr and "nothing is posted until it can be read" in res.stderr
               and text.strip() not in res.stdout + res.stderr,
               "a secret file holding %s: -t says it is no secret, nothing is posted with "
               "it" % label, diag=res.stdout + res.stderr)
    base = "spool_dir = %s\nsecret_file = %s\n" % (spool(st), secret(st))
    for value in ("500ms", "9s"):
        conf = write(st, "dla.conf", base + "dead_letter_after = %s\n" % value)
        refused(st, conf, "dead_letter_after must be 0 (never) or at least 10s",
                "dead_letter_after = " + value)


def test_spool_dir_unreachable(st):
    locked = st.path("locked")
    os.makedirs(os.path.join(locked, "spool"))
    os.chown(os.path.join(locked, "spool"), NOBODY.pw_uid, NOBODY.pw_gid)
    os.chmod(locked, 0o700)
    for sub, name in (("spool", "made"), ("later", "not made yet")):
        conf = write(st, "locked.conf", "spool_dir = %s\nsecret_file = %s\nuser = nobody\n"
                     % (os.path.join(locked, sub), secret(st)))
        refused(st, conf, "user nobody cannot reach it (Permission denied)",
                "spool_dir %s under a root-only directory" % name)
    tap.ok(not os.path.exists(os.path.join(locked, "later")),
           "the refused start made no spool_dir")
    os.chmod(locked, 0o711)
    conf = write(st, "locked.conf", "spool_dir = %s\nsecret_file = %s\nuser = nobody\n"
                 % (os.path.join(locked, "spool"), secret(st)))
    res = check(conf)
    tap.ok(res.returncode == 0, "the same, the directory above passable (0711): -t OK",
           diag=res.stdout + res.stderr)


def test_reload_refusals(st):
    # only secret_file: spool_dir is its default (not made by -t)
    conf = write(st, "nodir.conf", "secret_file = %s\n" % secret(st))
    res = check(conf)
    tap.ok(res.returncode >= 0 and ("configuration OK" in res.stdout or "spool_dir" in res.stderr),
           "no spool_dir line (the default): -t answers, no crash (exit %d)" % res.returncode,
           diag=res.stdout + res.stderr)
    conf = write(st, "reload.conf", "spool_dir = %s\nsecret_file = %s\nuser = nobody\n"
                 % (spool(st), secret(st)))
    proc, log = start(st, conf, "reload")
    tap.ok(proc is not None, "a runner as nobody runs", diag=st.read_log(log))
    if proc is None:
        return
    refused = "reload of %s failed; keeping the previous configuration" % conf
    with open(conf, "w"):
        pass                            # emptied under the running daemon
    proc.send_signal(signal.SIGHUP)
    tap.ok(wait_for(lambda: st.read_log(log).count(refused) == 1, timeout=10),
           "the file emptied, SIGHUP: the reload is refused", diag=st.read_log(log))
    tap.ok(proc.poll() is None, "and the runner is still running")
    root_only = secret(st, "root-only", mode=0o600, group=0)
    write(st, "reload.conf", "spool_dir = %s\nsecret_file = %s\nuser = nobody\n"
          % (spool(st), root_only))
    proc.send_signal(signal.SIGHUP)
    tap.ok(wait_for(lambda: st.read_log(log).count(refused) == 2, timeout=10),
           "secret_file switched to one nobody cannot read: the reload is refused, as -t "
           "refuses it", diag=st.read_log(log))
    tap.ok("user nobody cannot read it" in st.read_log(log), "and says why")
    tap.ok(proc.poll() is None, "the runner is still running")
    stop(proc)


def main():
    with Stack("wh-setup") as st:
        tap.stack = st
        test_spool_dir_made_for_user(st)
        test_root_only_secret(st)
        test_ca_file(st)
        test_secret_mode_and_dead_after(st)
        test_spool_dir_unreachable(st)
        test_reload_refusals(st)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
