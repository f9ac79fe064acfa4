#!/usr/bin/python3
"""A signal while a daemon starts (common/daemon.c, daemon_signal_hold()).

systemd runs ExecReload (kill -HUP) as soon as a Type=simple unit has
been forked, and configuration management often reloads right after a
restart. A daemon that blocked its signals only once its loop ran died
of a SIGHUP that came while it was loading (SIGHUP's default action),
and systemd does not restart a unit that SIGHUP ended.

For each of the four daemons: the moment it opens its configuration
file (inotify IN_OPEN), its main thread must already hold SIGHUP,
SIGINT, SIGTERM and SIGUSR1 (/proc/PID/status SigBlk; or, read a little
later, catch them with its handlers, SigCgt, or wait for them in
sigwait(), /proc/PID/syscall), and SIGHUPs sent
at that moment must end in a reload once it runs, not in its death.
SIGTERM then stops it with status 0.
"""

import ctypes
import os
import select
import signal
import socket
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
from mxdaemons import (POLICYD, SHIM, SPOOL, milter_negotiates, stop_status,  # noqa: E402
                      write)
from mxwebhook import make_secret  # noqa: E402
import mxdkim  # noqa: E402

IN_OPEN = 0x20
SYS_RT_SIGTIMEDWAIT = 128		# x86-64: sigwait()
HELD = {"SIGHUP": signal.SIGHUP, "SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM,
        "SIGUSR1": signal.SIGUSR1}
libc = ctypes.CDLL(None, use_errno=True)


class OpenWatch:
    """inotify IN_OPEN on one file."""

    def __init__(self, path):
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, path.encode(), IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), "inotify on %s" % path)

    def wait(self, timeout):
        if not select.select([self.fd], [], [], timeout)[0]:
            return False
        mask = struct.unpack_from("iIII", os.read(self.fd, 4096), 0)[1]
        return bool(mask & IN_OPEN)

    def close(self):
        os.close(self.fd)


def sig_blocked(pid):
    """{signal name: in the daemon's hands?} of pid's main thread, or None
    once it is gone. Read a little after the open, so any of: blocked
    (held), caught by its handler (daemon_signal_fd() unblocks the held
    signals once its handlers are in), or waited for in sigwait() (the
    kernel shows the waited signals unblocked meanwhile, and the thread
    stays there until a signal comes: none is sent before this)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        mask = int(fields["SigBlk"], 16) | int(fields["SigCgt"], 16)
        with open("/proc/%d/syscall" % pid) as f:
            waiting = f.read().split()[0] == str(SYS_RT_SIGTIMEDWAIT)
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return {name: waiting or bool(mask & (1 << (num - 1))) for name, num in HELD.items()}


def check(st, name, argv, conf, started):
    """Start argv; at its first open of conf, read its mask and HUP it."""
    watch = OpenWatch(conf)
    try:
        proc = st.start_daemon(name, argv)
        opened = watch.wait(20)
        held = sig_blocked(proc.pid) if opened else None
        for _ in range(3):
            if opened and proc.poll() is None:
                os.kill(proc.pid, signal.SIGHUP)
    finally:
        watch.close()
    tap.ok(opened, "%s: opened its configuration" % name)
    tap.is_(held, {k: True for k in HELD}, "%s: signals held when it reads its configuration"
            % name)
    up = wait_for(lambda: proc.poll() is not None or started(), timeout=20)
    tap.ok(up and proc.poll() is None, "%s: SIGHUP during start-up: still running" % name,
           diag=st.read_log(name)[-600:])
    tap.ok(wait_for(lambda: "reloaded" in st.read_log(name) or proc.poll() is not None,
                    timeout=10) and proc.poll() is None,
           "%s: the SIGHUP became a reload once started" % name, diag=st.read_log(name)[-600:])
    tap.is_(stop_status(proc), 0, "%s: SIGTERM: exits 0" % name)


def test_policyd(st):
    conf = write(st, "policyd.conf", "listen = inet:127.0.0.1:%d\nworkers = 2\n"
                 "limit per_sender = sender rate=100/1m count=messages\n" % st.port("policyd"))
    check(st, "policyd", [POLICYD, "-f", "-c", conf], conf,
          lambda: "started:" in st.read_log("policyd"))


def test_shim(st):
    conf = write(st, "shim.conf", "workers = 2\nxclient_name_lookup = no\n"
                 "listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=xclient "
                 "trusted=127.0.0.0/8\n" % (st.port("shim"), st.port("nobody")))
    check(st, "shim", [SHIM, "-f", "-c", conf], conf, lambda: "started:" in st.read_log("shim"))


def test_spool(st):
    spool = st.path("spool")
    for sub in ("active", "dead", "tmp"):
        os.makedirs(os.path.join(spool, sub))
    secret = write(st, "spool.secret", make_secret() + "\n")
    mport = st.port("spool-metrics")
    conf = write(st, "spool.conf", "spool_dir = %s\nsecret_file = %s\n"
                 "metrics_listen = inet:127.0.0.1:%d\n" % (spool, secret, mport))

    def started():
        try:
            socket.create_connection(("127.0.0.1", mport), timeout=1).close()
            return True
        except OSError:
            return False
    check(st, "spool", [SPOOL, "-c", conf, "-f", "run"], conf, started)


def test_milter(st):
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    port = st.port("milter")
    conf = write(st, "milter.conf", "socket = inet:%d@127.0.0.1\n"
                 "key_table = %s/etc/key.table\nsigning_table = refile:%s/etc/signing.table\n"
                 "dns_test_file = %s/etc/dns.txt\ninternal_hosts = 127.0.0.0/8\n"
                 % (port, st.dir, st.dir, st.dir))

    def started():
        try:
            return milter_negotiates(port)
        except OSError:
            return False
    check(st, "milter", [mxdkim.MILTER, "-f", "-c", conf], conf, started)


with Stack("startsig") as st:
    tap.stack = st
    os.makedirs(st.path("etc"), exist_ok=True)
    for test in (test_policyd, test_shim, test_spool, test_milter):
        test(st)

sys.exit(tap.done())
