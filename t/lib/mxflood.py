"""Floods of idle connections and what they cost a daemon, read from
/proc: the daemon tests (daemons_hostile_test, metrics_flood_test) open
more connections than the daemon has descriptors and check it holds."""

import errno
import os
import socket


def cpu_ticks(pid):
    """utime + stime of a live process, in clock ticks."""
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Flood:
    """count idle connections to 127.0.0.1:port, opened as fast as the
    kernel takes them. Blocking by default (each connect waits up to 3 s;
    refused ones are counted); with wait=False every connect is started
    at once and left to the kernel, for a listener that stops accepting
    (its backlog full, further SYNs are retried, never refused)."""

    def __init__(self, port, count, wait=True):
        self.socks = []
        self.refused = 0
        for _ in range(count):
            s = socket.socket()
            try:
                if wait:
                    s.settimeout(3)
                    s.connect(("127.0.0.1", port))
                else:
                    s.setblocking(False)
                    err = s.connect_ex(("127.0.0.1", port))
                    if err not in (0, errno.EINPROGRESS):
                        raise OSError(err, os.strerror(err))
                self.socks.append(s)
            except OSError:
                self.refused += 1
                s.close()

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []
