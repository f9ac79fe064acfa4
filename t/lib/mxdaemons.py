"""Starting mxkit's daemons with a metrics endpoint for the tests of what
every daemon shares (common/: metrics_http, liveness, the skeleton):
metrics_flood_test, liveness_test, daemons_hostile_test; and a daemon's
minimal configuration with the process checks of the start-up attacks
(daemon_lifecycle_attack_test, start_attack_test)."""

import os
import re
import signal
import socket
import struct

from mxtest import build_path, run, wait_for
import mxdkim
from mxwebhook import make_secret

POLICYD = build_path("policyd-ratelimit", "policyd-ratelimit")
SHIM = build_path("proxyv2-shim", "proxyv2-shim")
SPOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")


def write(st, name, text):
    """st's etc/NAME holding text; its path."""
    path = st.path("etc", name)
    with open(path, "w") as f:
        f.write(text)
    return path


def wait_started(st, name, proc):
    """Wait for the daemon's "started:" line: it is logged once every
    worker thread runs, while its ports accept (into the backlog) before."""
    if not wait_for(lambda: "started:" in st.read_log(name) or proc.poll() is not None,
                    timeout=20):
        raise RuntimeError("%s: no \"started:\" line within 20 s" % name)
    if proc.poll() is not None:
        raise RuntimeError("%s: exited with %s" % (name, proc.returncode))


def start_policyd(st, name, workers=1, prefix=()):
    """A memory-store policyd-ratelimit with metrics_listen: (proc, port,
    metrics port). prefix: e.g. ["prlimit", "--nofile=64"]."""
    port, mport = st.port(name), st.port(name + "-metrics")
    conf = write(st, name + ".conf", "listen = inet:127.0.0.1:%d\nworkers = %d\n"
                 "metrics_listen = inet:127.0.0.1:%d\n"
                 "limit per_sender = sender rate=100000/1m count=messages\n"
                 % (port, workers, mport))
    proc = st.start_daemon(name, list(prefix) + [POLICYD, "-f", "-c", conf], port=port)
    wait_started(st, name, proc)
    return proc, port, mport


def start_shim(st, name, backend, workers=1, prefix=()):
    """proxyv2-shim in xclient mode to backend, trusting 127.0.0.0/8, with
    metrics_listen: (proc, port, metrics port)."""
    port, mport = st.port(name), st.port(name + "-metrics")
    conf = write(st, name + ".conf", "workers = %d\nxclient_name_lookup = no\n"
                 "listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=xclient "
                 "trusted=127.0.0.0/8\nmetrics_listen = inet:127.0.0.1:%d\n"
                 % (workers, port, backend, mport))
    proc = st.start_daemon(name, list(prefix) + [SHIM, "-f", "-c", conf], port=mport)
    wait_started(st, name, proc)
    return proc, port, mport


def start_spool_runner(st, name, prefix=()):
    """lmtp-webhook-spool run on an empty spool, with metrics_listen:
    (proc, metrics port)."""
    spool = st.path(name + "-spool")
    for sub in ("active", "dead", "tmp"):
        os.makedirs(os.path.join(spool, sub))
    secret = write(st, name + ".secret", make_secret() + "\n")
    mport = st.port(name + "-metrics")
    conf = write(st, name + ".conf", "spool_dir = %s\nsecret_file = %s\n"
                 "metrics_listen = inet:127.0.0.1:%d\n" % (spool, secret, mport))
    proc = st.start_daemon(name, list(prefix) + [SPOOL, "-c", conf, "-f", "run"], port=mport)
    return proc, mport


def milter_negotiates(port):
    """SMFIC_OPTNEG (milter protocol 6); the milter answers SMFIC_OPTNEG."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        body = b"O" + struct.pack("!III", 6, 0x1ff, 0x1fffff)
        s.sendall(struct.pack("!I", len(body)) + body)
        return s.recv(5)[4:5] == b"O"
    finally:
        s.close()


def http_get(port, path="/healthz", timeout=5, head_extra=b""):
    """(status line, body) or None when nothing came within timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + head_extra
                  + b"Connection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return None
    except OSError as e:
        return ("error", str(e))
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body.decode(errors="replace")


def stop_status(proc, timeout=15):
    """SIGTERM to proc (if it still runs); its exit status, or None when
    it did not exit within timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except Exception:
        return None


POLICY_REQUEST = (b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
                  b"client_address=192.0.2.1\nsender=a@example.com\nrecipient=b@example.net\n\n")


def policy_answered(port):
    """policyd on 127.0.0.1:port answers one request with an action."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(POLICY_REQUEST)
            return c.recv(100).startswith(b"action=")
    except OSError:
        return False


def port_accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return True
    except OSError:
        return False


# ------------------------------------------------ the start-up attacks

def readyz(mport):
    """The status line of GET /readyz, or why there is none."""
    try:
        got = http_get(mport, "/readyz", timeout=5)
    except OSError as e:
        return str(e)
    return got[0] if got else "no answer"


def alive(pid):
    """pid runs and is no zombie."""
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def read_pid(path):
    """(the pid in a pid file, or None; the file's text, or None)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None, None
    return (int(text) if re.fullmatch(r"[0-9]+\n", text) else None), text


def running(conf):
    """pids of processes whose command line names conf (strace's too)."""
    res = run(["pgrep", "-f", "--", conf])
    return sorted(int(p) for p in res.stdout.split())


def kill_all(conf):
    for pid in running(conf):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    wait_for(lambda: not running(conf), timeout=5)


class MinimalDaemon:
    """One daemon's minimal configuration on fresh ports: kind is policyd,
    shim, milter (the key st's etc/ holds) or spool; name is what the
    checks call it."""

    def __init__(self, st, kind, tag, name=None):
        self.st, self.kind, self.name = st, kind, name or "%s-%s" % (kind, tag)
        self.port = st.port("%s-%s" % (tag, kind))
        self.mport = st.port("%s-%s-metrics" % (tag, kind))
        self.pid_file = st.path("run", "%s-%s.pid" % (tag, kind))
        self.conf = st.path("etc", "%s-%s.conf" % (tag, kind))
        self.spool = st.path("spool-%s-%s" % (tag, kind))

    def base(self):
        st = self.st
        if self.kind == "policyd":
            return ("listen = inet:127.0.0.1:%d\nlimit per_sender = sender rate=100/1m "
                    "count=messages\n" % self.port)
        if self.kind == "shim":
            return ("xclient_name_lookup = no\nlistener = 127.0.0.1:%d backend=127.0.0.1:%d "
                    "mode=xclient trusted=127.0.0.0/8\n" % (self.port, st.port("nobody")))
        if self.kind == "milter":
            return ("socket = inet:%d@127.0.0.1\nkey_table = %s\nsigning_table = refile:%s\n"
                    "dns_test_file = %s\ninternal_hosts = 127.0.0.0/8\n"
                    % (self.port, st.path("etc", "key.table"), st.path("etc", "signing.table"),
                       st.path("etc", "dns.txt")))
        for sub in ("active", "dead", "tmp"):
            os.makedirs(os.path.join(self.spool, sub), exist_ok=True)
        return "spool_dir = %s\nsecret_file = %s\n" % (self.spool, st.path("etc", "secret"))

    def write(self, pid_file=True, metrics=True, extra=""):
        """pid_file: True (its own), False (none) or a path."""
        text = self.base() + extra
        if pid_file:
            text += "pid_file = %s\n" % (pid_file if isinstance(pid_file, str)
                                         else self.pid_file)
        if metrics:
            text += "metrics_listen = inet:127.0.0.1:%d\n" % self.mport
        with open(self.conf, "w") as f:
            f.write(text)
        return self

    def argv(self, foreground=False, check=False):
        binary = {"policyd": POLICYD, "shim": SHIM, "milter": mxdkim.MILTER,
                  "spool": SPOOL}[self.kind]
        argv = [binary, "-c", self.conf] + (["-f"] if foreground else []) \
            + (["-t"] if check else [])
        return argv + (["run"] if self.kind == "spool" else [])

    def serves(self):
        if self.kind == "policyd":
            return policy_answered(self.port)
        if self.kind == "shim":
            return port_accepts(self.port)
        if self.kind == "milter":
            try:
                return milter_negotiates(self.port)
            except OSError:
                return False
        return True

    def clean(self):
        """Nothing of it left running, no pid file."""
        kill_all(self.conf)
        if os.path.exists(self.pid_file):
            os.unlink(self.pid_file)


def daemons_running(conf):
    """running(conf) without the strace, sh, python and prlimit wrappers
    that tests start daemons under."""
    out = []
    for pid in running(conf):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except OSError:
            continue
        if os.path.basename(argv0) not in (b"strace", b"sh", b"python3", b"prlimit"):
            out.append(pid)
    return out


def children(pid):
    """pid's child processes (/proc's children list)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def stop_detached(d, pid):
    """SIGTERM to a detached daemon; True once it is gone. d.clean() after."""
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
    gone = wait_for(lambda: not alive(pid), timeout=15)
    d.clean()
    return gone
