#!/usr/bin/python3
"""policyd-ratelimit as PID 1 (helper-121): in a container without an init
the daemon is PID 1, and every orphan of the container becomes its child.
A quarantine's notify command that leaves something running ("curl ...
&") left a zombie per lock for the container's life; under a pids limit
forks then failed ("notify skipped: fork: Resource temporarily
unavailable") and the page about a leaked credential was lost.

The daemon runs as PID 1 of a PID namespace of its own (unshare --pid,
a fresh /proc), 12 quarantine locks each start a notify command that
leaves two background children behind: after they end, no zombie is left
under the daemon, and every notify is logged done."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

LOCKS = 12


def policy(port, helo, instance, stage):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rwb")
    reply = mp.policy_request(f, {
        "request": "smtpd_access_policy", "protocol_state": stage, "instance": instance,
        "recipient": "r@example.net", "client_address": "192.0.2.7", "helo_name": helo})
    sock.close()
    return reply and reply[0]


def children(pid):
    """(pid, state) of every process whose parent is pid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append((int(name), fields[0]))
    return out


def main():
    with Stack("policyd-pid1") as st:
        tap.stack = st
        os.makedirs(st.path("etc"), exist_ok=True)
        notify = st.path("etc", "notify.sh")
        with open(notify, "w") as f:
            f.write("#!/bin/sh\n( sleep 0.3 & ) ; sleep 0.6 &\nexit 0\n")
        os.chmod(notify, 0o755)
        port = st.port("policyd")
        conf = mp.write_config(st, "policyd", """\
listen = inet:127.0.0.1:%d
store = memory
limit per_helo = helo_name rate=1/1h
quarantine flood = helo_name when=per_helo exceeded=1/1m action=reject notify=%s
""" % (port, notify))
        proc = st.start_daemon("policyd", ["unshare", "--pid", "--fork", "--mount-proc",
                                           mp.POLICYD, "-f", "-c", conf], port=port)
        inner = wait_for(lambda: [p for p, _ in children(proc.pid)], timeout=10)
        tap.ok(inner, "policyd-ratelimit runs in its own PID namespace")
        daemon = inner[0]
        with open("/proc/%d/status" % daemon) as f:
            nspid = [ln.split()[-1] for ln in f if ln.startswith("NSpid:")]
        tap.is_(nspid, ["1"], "as its PID 1")
        for i in range(LOCKS):
            helo = "bulk%d.example" % i
            for n in range(3):          # one message, then a strike: locked
                if policy(port, helo, "i%d-%d" % (i, n), "RCPT") == "action=DUNNO":
                    policy(port, helo, "i%d-%d" % (i, n), "END-OF-MESSAGE")
        tap.ok(wait_for(lambda: st.read_log("policyd").count("notify (pid") >= LOCKS,
                        timeout=20),
               "%d locks, %d notify commands logged done" % (LOCKS, LOCKS),
               diag=st.read_log("policyd")[-1500:])
        time.sleep(2)                   # the background children end; reaped within 200 ms
        zombies = [p for p, state in children(daemon) if state == "Z"]
        tap.is_(zombies, [], "no zombie left under PID 1 (their orphans reaped too)",
                diag=str(children(daemon)))
        tap.ok(proc.poll() is None, "the daemon is still running")
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
