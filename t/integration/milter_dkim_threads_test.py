#!/usr/bin/python3
"""milter-dkim under a pids limit (helper-121): each milter session is a
thread, and under --pids-limit 8 sessions past the limit waited in the
listen backlog 10 s and more, /readyz 200 and two warnings in the log.
The start now says when the process's cgroup pids limit (or
RLIMIT_NPROC) leaves fewer threads than max_sessions; a session past
the limit still waits for one to end, and none is lost.

The daemon starts inside a cgroup of its own (the pids controller,
pids.max 12): the warning names the room and max_sessions; 20 sessions
opened at once all get their negotiation answered once the earlier ones
close; the same start without the limit says nothing."""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402

CONF = """\
socket = inet:{port}@127.0.0.1
mode = verify
authserv_id = mx.mxkit.test
max_sessions = 40
"""
OPTNEG = b"O" + struct.pack("!III", 6, 0x1FF, 0x1FFFFF)


def negotiate(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(struct.pack("!I", len(OPTNEG)) + OPTNEG)
    return s


def answered(s, timeout):
    s.settimeout(timeout)
    try:
        return len(s.recv(4)) == 4
    except OSError:
        return False


def pids_cgroup_root():
    for line in open("/proc/self/cgroup"):
        if ":pids:" in line:
            return "/sys/fs/cgroup/pids"
    return "/sys/fs/cgroup" if os.path.exists("/sys/fs/cgroup/cgroup.subtree_control") else None


def main():
    root = pids_cgroup_root()
    with Stack("milter-dkim-threads") as st:
        tap.stack = st
        if root is None or not os.access(root, os.W_OK):
            tap.ok(False, "a pids cgroup this test can make (root: %s)" % root)
            return tap.done()
        group = os.path.join(root, "mxkit-milter-threads-%d" % os.getpid())
        os.mkdir(group)
        if not os.path.exists(os.path.join(group, "pids.max")):     # v2: enable it
            try:
                with open(os.path.join(root, "cgroup.subtree_control"), "w") as f:
                    f.write("+pids\n")
            except OSError as e:
                tap.diag("cannot enable the pids controller: %s" % e)
        try:
            if not tap.ok(os.path.exists(os.path.join(group, "pids.max")),
                          "a pids cgroup of the test's own (%s)" % group):
                return tap.done()
            with open(os.path.join(group, "pids.max"), "w") as f:
                f.write("12\n")
            port = st.port("milter")
            conf = st.path("etc", "milter.conf")
            os.makedirs(st.path("etc"), exist_ok=True)
            with open(conf, "w") as f:
                f.write(CONF.replace("{port}", str(port)))
            proc = st.start_daemon("milter", [
                "sh", "-c", 'echo $$ > "$0"/cgroup.procs && exec "$1" -f -c "$2"', group,
                mxdkim.MILTER, conf], port=port)
            wait_for(lambda: "fewer than max_sessions" in st.read_log("milter"), timeout=5)
            log = st.read_log("milter")
            tap.ok("fewer than max_sessions (40)" in log and "pids limit" in log,
                   "the start says the pids limit leaves fewer threads than max_sessions",
                   diag=log[-800:])
            socks = [negotiate(port) for _ in range(20)]
            first = [answered(s, 3) for s in socks[:4]]
            tap.ok(all(first), "the first sessions are negotiated")
            for s in socks[:12]:
                s.close()
            rest = [answered(s, 15) for s in socks[12:]]
            tap.ok(all(rest), "the sessions that waited are negotiated once others end "
                   "(%d of %d)" % (sum(rest), len(rest)))
            for s in socks[12:]:
                s.close()
            tap.ok(proc.poll() is None, "milter-dkim is still running")
            proc.terminate()
            proc.wait(timeout=30)
        finally:
            for _ in range(50):
                try:
                    os.rmdir(group)
                    break
                except OSError:
                    time.sleep(0.1)
        port2 = st.port("milter2")
        conf2 = st.path("etc", "milter2.conf")
        with open(conf2, "w") as f:
            f.write(CONF.replace("{port}", str(port2)))
        st.start_daemon("milter2", [mxdkim.MILTER, "-f", "-c", conf2], port=port2)
        tap.ok("fewer than max_sessions" not in st.read_log("milter2"),
               "without the limit: not said")
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
