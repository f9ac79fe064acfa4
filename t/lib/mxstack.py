#!/usr/bin/python3
"""mxstack - boot real Postfix, Dovecot, Redis, haproxy and smtp-sink on
127.0.0.1 with free random ports, in one temporary directory, and always
tear them down again.

Used as a library by every integration test and by contrib/demo:

    with Stack("submission") as st:
        st.start_dovecot()
        st.start_sink()
        st.start_postfix()
        ... st.port("submission") ...

and as a command for a stack that outlives its caller (contrib/demo --keep):

    mxstack.py up DIR [--redis] [--haproxy FILE]   boots and prints JSON
    mxstack.py down DIR                            stops it
    mxstack.py sweep DIR                           kills anything left in DIR

Teardown is layered so that a failing test leaves nothing behind: each
daemon is asked to stop, then every process whose command line, working
directory or environment mentions the stack directory is killed. On
failure, each daemon's log is printed (as TAP comments) before teardown.
"""

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

POSTFIX_GLOBAL_MAIN_CF = "/etc/postfix/main.cf"
POSTFIX_LOCK = "/run/mxkit-stack-postfix.lock"
DOMAIN = "mxkit.test"

# Users in Dovecot's passwd-file: SASL credentials and LMTP mailboxes.
DEFAULT_USERS = {
    "alice@" + DOMAIN: "alice-secret",
    "bob@" + DOMAIN: "bob-secret",
    "bills@acme.planapulse.app": "bills-secret",
    "svc-billing": "billing-secret",
    "svc-alerts": "alerts-secret",
}


class StackError(Exception):
    pass


# free_port() hands out ports below the kernel's ephemeral range (32768 and
# up on Linux), in turn, from a counter every process on the machine shares:
# a port the kernel picked with bind(0) and we closed again could be picked
# by another test file running at the same time (t/run-integration's
# MXKIT_TEST_JOBS), or taken by a client's connect(), before our daemon
# binds it. Here a port comes round again only after 12,000 others.
PORT_FIRST, PORT_END = 20000, 32000
PORT_COUNTER = "/tmp/mxkit-ports.next"


def _bindable(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port():
    """A free TCP and UDP port on 127.0.0.1 that no other caller of
    free_port() on this machine was given recently (see PORT_COUNTER)."""
    fd = os.open(PORT_COUNTER, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.fchmod(fd, 0o666)    # a test that runs as another user shares it too
        except OSError:
            pass
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        span = PORT_END - PORT_FIRST
        nxt = int(text) if text.isdigit() and PORT_FIRST <= int(text) < PORT_END \
            else PORT_FIRST + int.from_bytes(os.urandom(2), "big") % span
        for _ in range(span):
            port, nxt = nxt, PORT_FIRST + (nxt + 1 - PORT_FIRST) % span
            if _bindable(port):
                os.ftruncate(fd, 0)
                os.pwrite(fd, b"%d\n" % nxt, 0)
                return port
        raise StackError("free_port: no free port in %d-%d" % (PORT_FIRST, PORT_END - 1))
    finally:
        os.close(fd)


def wait_port(port, host="127.0.0.1", timeout=20.0, proc=None):
    """Wait until something accepts on host:port; False on timeout or
    when proc (a Popen) exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _proc_mentions(pid, needle):
    """Does /proc/PID's cmdline, cwd or environment mention needle?"""
    base = "/proc/%d" % pid
    try:
        with open(base + "/cmdline", "rb") as f:
            if needle.encode() in f.read():
                return True
        if os.readlink(base + "/cwd").startswith(needle):
            return True
        with open(base + "/environ", "rb") as f:
            if needle.encode() in f.read():
                return True
    except OSError:
        pass
    return False


def processes_in(directory):
    """PIDs of processes that still belong to a stack directory."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me and _proc_mentions(int(name), directory):
            found.append(int(name))
    return found


def sweep(directory, grace=2.0):
    """SIGTERM, then SIGKILL, everything that belongs to directory."""
    pids = processes_in(directory)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = processes_in(directory)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while processes_in(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes_in(directory)


def _postfix_register(directory, add):
    """Add or remove directory in the default main.cf's
    alternate_config_directories; `postfix -c DIR start` requires it."""
    with open(POSTFIX_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(POSTFIX_GLOBAL_MAIN_CF):
            with open(POSTFIX_GLOBAL_MAIN_CF, "w") as f:
                f.write("# written by mxkit's test stack launcher\n"
                        "compatibility_level = 3.6\n")
        current = subprocess.run(
            ["postconf", "-h", "alternate_config_directories"],
            capture_output=True, text=True).stdout.replace(",", " ").split()
        if add and directory not in current:
            current.append(directory)
        elif not add and directory in current:
            current.remove(directory)
        _main_cf_set(POSTFIX_GLOBAL_MAIN_CF, "alternate_config_directories", " ".join(current))


def _main_cf_set(path, name, value):
    """Set name = value in a main.cf, written in place of `postconf -e`:
    that command's line would name every registered stack directory, and
    another stack's teardown sweep (which kills whatever mentions its
    directory) could kill it halfway. Replaces the parameter's line and
    its continuation lines; temp file + rename, mode kept."""
    with open(path) as f:
        lines = f.read().splitlines(True)
    out, skipping = [], False
    for line in lines:
        if skipping and line[:1] in (" ", "\t") and line.strip():
            continue
        skipping = line.split("=", 1)[0].strip() == name and "=" in line \
            and not line.lstrip().startswith("#") and line[:1] not in (" ", "\t")
        if not skipping:
            out.append(line)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    out.append("%s = %s\n" % (name, value))
    tmp = path + ".mxstack-tmp"
    with open(tmp, "w") as f:
        f.writelines(out)
    os.chmod(tmp, os.stat(path).st_mode & 0o7777)
    os.replace(tmp, path)


class Stack:
    """One throwaway mail stack in its own directory."""

    def __init__(self, name="stack", directory=None, keep=False, out=sys.stdout):
        if directory:
            os.makedirs(directory, exist_ok=True)
            self.dir = os.path.abspath(directory)
        else:
            # MXKIT_TMPDIR: a benchmark on another file system than /tmp's
            self.dir = tempfile.mkdtemp(prefix="mxkit-%s." % name,
                                        dir=os.environ.get("MXKIT_TMPDIR", "/tmp"))
        os.chmod(self.dir, 0o755)
        self.keep = keep
        self.out = out
        self.ports = {}
        self.procs = {}        # name -> Popen (or pid when reloaded)
        self.logs = {}         # name -> log file path
        self.users = dict(DEFAULT_USERS)
        self.failed = False
        self.postfix_dirs = []
        for sub in ("log", "etc"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)

    # ---------------------------------------------------------------- basics
    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def port(self, name):
        if name not in self.ports:
            self.ports[name] = free_port()
        return self.ports[name]

    def _spawn(self, name, argv, log, env=None, cwd=None):
        logf = open(log, "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True, env=env, cwd=cwd or self.dir)
        logf.close()
        self.procs[name] = proc
        self.logs[name] = log
        return proc

    def _ready(self, name, port, proc=None, host="127.0.0.1", timeout=20.0):
        if not wait_port(port, host=host, timeout=timeout, proc=proc):
            self.failed = True
            raise StackError("%s did not start listening on %s:%d; its log:\n%s"
                             % (name, host, port, self.read_log(name)))

    def read_log(self, name):
        try:
            with open(self.logs[name], errors="replace") as f:
                return f.read()
        except (OSError, KeyError):
            return "(no log)"

    # ---------------------------------------------------------------- redis
    def start_redis(self):
        port = self.port("redis")
        os.makedirs(self.path("redis"), exist_ok=True)
        proc = self._spawn("redis", [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self.path("redis"),
            "--daemonize", "no", "--protected-mode", "no"], self.path("log", "redis.log"))
        self._ready("redis", port, proc)
        return port

    def stop_redis(self):
        """Kill redis-server (fault-injection tests); start_redis() restarts
        it on the same port."""
        proc = self.procs.pop("redis", None)
        if proc is not None:
            proc.kill()
            proc.wait()

    # ------------------------------------------------------------- smtp-sink
    def start_sink(self):
        port = self.port("sink")
        sinkdir = self.path("sink")
        os.makedirs(sinkdir, exist_ok=True)
        shutil.chown(sinkdir, "postfix", "postfix")
        proc = self._spawn("sink", [
            "smtp-sink", "-u", "postfix", "-d", sinkdir + "/%M.", "-c",
            "127.0.0.1:%d" % port, "256"], self.path("log", "sink.log"))
        self._ready("sink", port, proc)
        return port

    def sink_messages(self):
        """Contents of every message smtp-sink has dumped so far."""
        result = []
        for name in sorted(os.listdir(self.path("sink"))):
            with open(self.path("sink", name), errors="replace") as f:
                result.append(f.read())
        return result

    # --------------------------------------------------------------- dovecot
    def start_dovecot(self, lmtp_plugins="", plugin_settings=None, extra=""):
        lmtp, auth = self.port("lmtp"), self.port("auth")
        for sub in ("dovecot/run", "dovecot/state", "mail"):
            os.makedirs(self.path(sub), exist_ok=True)
        shutil.chown(self.path("mail"), "nobody", "nogroup")
        with open(self.path("dovecot", "users"), "w") as f:
            for user, password in self.users.items():
                f.write("%s:{PLAIN}%s::::::\n" % (user, password))
        plugin_lines = "".join("  %s = %s\n" % kv for kv in (plugin_settings or {}).items())
        conf = DOVECOT_CONF.format(d=self.dir, lmtp=lmtp, auth=auth, plugins=lmtp_plugins,
                                   plugin_settings=plugin_lines, extra=extra)
        conf_path = self.path("dovecot", "dovecot.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        self.logs["dovecot"] = self.path("log", "dovecot.log")
        proc = self._spawn("dovecot-master", ["dovecot", "-F", "-c", conf_path],
                           self.path("log", "dovecot-master.log"))
        self.logs["dovecot"] = self.path("log", "dovecot.log")
        self._ready("dovecot-master", lmtp, proc)
        self._ready("dovecot-master", auth, proc)
        return lmtp

    def maildir_messages(self, user, folder="new"):
        local, _, domain = user.partition("@")
        base = self.path("mail", domain, local, "Maildir")
        result = []
        for sub in ("new", "cur") if folder == "new" else (folder,):
            d = os.path.join(base, sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    with open(os.path.join(d, name), "rb") as f:
                        result.append(f.read())
        return result

    # --------------------------------------------------------------- postfix
    def start_postfix(self, name="postfix", main=None, submission=None, smtpd=None):
        """Boot a throwaway Postfix named `name` (several per stack are fine).
        main: extra main.cf parameters; submission/smtpd: extra -o options
        for the submission (SASL) and plain smtpd services."""
        d = self.path(name)
        os.makedirs(d, exist_ok=True)
        os.makedirs(os.path.join(d, "data"), exist_ok=True)
        os.makedirs(os.path.join(d, "queue"), exist_ok=True)
        shutil.chown(os.path.join(d, "data"), "postfix", "postfix")
        smtp_port = self.port(name + "-smtp")
        sub_port = self.port(name + "-submission")
        params = dict(POSTFIX_MAIN)
        params.update({
            "queue_directory": os.path.join(d, "queue"),
            "data_directory": os.path.join(d, "data"),
            "maillog_file": self.path("log", name + ".log"),
            "maillog_file_prefixes": self.dir,
            "virtual_transport": "lmtp:inet:127.0.0.1:%d" % self.ports["lmtp"]
            if "lmtp" in self.ports else "error:no Dovecot in this stack",
            "smtpd_sasl_path": "inet:127.0.0.1:%d" % self.ports["auth"]
            if "auth" in self.ports else "",
            "default_transport": "smtp:[127.0.0.1]:%d" % self.ports["sink"]
            if "sink" in self.ports else "error:no smtp-sink in this stack",
        })
        params["relay_transport"] = params["default_transport"]
        if not params["smtpd_sasl_path"]:     # no Dovecot: Postfix refuses an empty path
            del params["smtpd_sasl_path"]
        params.update(main or {})
        with open(os.path.join(d, "main.cf"), "w") as f:
            for key, value in params.items():
                f.write("%s = %s\n" % (key, value))
        with open(os.path.join(d, "master.cf"), "w") as f:
            f.write(postfix_master_cf(smtp_port, sub_port, submission or {}, smtpd or {},
                                      "auth" in self.ports))
        self.logs[name] = params["maillog_file"]
        _postfix_register(d, True)
        self.postfix_dirs.append(d)
        for action in ("start",):
            res = subprocess.run(["postfix", "-c", d, action], capture_output=True, text=True)
            if res.returncode != 0:
                self.failed = True
                raise StackError("postfix -c %s %s failed: %s%s\n%s" % (
                    d, action, res.stdout, res.stderr, self.read_log(name)))
        self._ready(name, smtp_port)
        self._ready(name, sub_port)
        return smtp_port

    def postfix_queue_count(self, name="postfix"):
        """Messages still in this Postfix's queue (postqueue -j)."""
        res = subprocess.run(["postqueue", "-c", self.path(name), "-j"],
                             capture_output=True, text=True)
        return len([line for line in res.stdout.splitlines() if line.strip()])

    def postfix_flush(self, name="postfix"):
        subprocess.run(["postqueue", "-c", self.path(name), "-f"], capture_output=True)

    # --------------------------------------------------------------- haproxy
    def start_haproxy(self, sections, wait_ports=()):
        """sections: haproxy frontend/backend text; {port:NAME} placeholders
        are replaced by this stack's ports."""
        body = sections
        for key in list(self.ports):
            body = body.replace("{port:%s}" % key, str(self.ports[key]))
        conf = HAPROXY_GLOBAL + body
        path = self.path("etc", "haproxy.cfg")
        with open(path, "w") as f:
            f.write(conf)
        check = subprocess.run(["haproxy", "-c", "-f", path], capture_output=True, text=True)
        if check.returncode != 0:
            self.failed = True
            raise StackError("haproxy rejects its configuration:\n%s%s" % (check.stdout,
                                                                              check.stderr))
        proc = self._spawn("haproxy", ["haproxy", "-db", "-f", path],
                           self.path("log", "haproxy.log"))
        for port in wait_ports:
            self._ready("haproxy", port, proc)
        return proc

    # -------------------------------------------------------------- any daemon
    def start_daemon(self, name, argv, port=None, env=None):
        """Start one of our own daemons (or any program) in the foreground
        under this stack; wait for port when given."""
        proc = self._spawn(name, argv, self.path("log", name + ".log"), env=env)
        if port:
            self._ready(name, port, proc)
        return proc

    # -------------------------------------------------------------- teardown
    def dump_logs(self, stream=None):
        stream = stream or self.out
        for name in sorted(set(self.logs)):
            stream.write("# ---- log: %s (%s)\n" % (name, self.logs[name]))
            for line in self.read_log(name).splitlines()[-200:]:
                stream.write("#   %s\n" % line)
        stream.flush()

    def stop(self):
        for d in self.postfix_dirs:
            subprocess.run(["postfix", "-c", d, "abort"], capture_output=True)
        for name, proc in list(self.procs.items()):
            try:
                pid = proc.pid if hasattr(proc, "pid") else int(proc)
                os.killpg(pid, signal.SIGTERM)
            except OSError:
                pass
        for proc in self.procs.values():
            if hasattr(proc, "wait"):
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        left = sweep(self.dir)
        for d in self.postfix_dirs:
            _postfix_register(d, False)
        self.procs.clear()
        if left:
            raise StackError("processes survived teardown of %s: %s" % (self.dir, left))

    def save(self):
        state = {"dir": self.dir, "ports": self.ports, "logs": self.logs,
                 "postfix_dirs": self.postfix_dirs,
                 "pids": {n: (p.pid if hasattr(p, "pid") else p)
                          for n, p in self.procs.items()}}
        with open(self.path("stack.json"), "w") as f:
            json.dump(state, f, indent=2)
        return state

    @classmethod
    def load(cls, directory):
        with open(os.path.join(directory, "stack.json")) as f:
            state = json.load(f)
        st = cls(directory=directory, keep=True)
        st.ports, st.logs = state["ports"], state["logs"]
        st.postfix_dirs = state["postfix_dirs"]
        st.procs = dict(state["pids"])
        return st

    def __enter__(self):
        signal.signal(signal.SIGTERM, _raise_on_signal)
        signal.signal(signal.SIGINT, _raise_on_signal)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and not (exc_type is SystemExit and exc.code in (0, None)):
            self.failed = True
            self.out.write("# exception: %s: %s\n" % (exc_type.__name__, exc))
        if self.failed:
            self.dump_logs()
        if not self.keep:
            self.stop()
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


def _raise_on_signal(signum, frame):
    raise SystemExit("stopped by signal %d" % signum)


POSTFIX_MAIN = {
    "compatibility_level": "3.6",
    "command_directory": "/usr/sbin",
    "daemon_directory": "/usr/lib/postfix/sbin",
    "shlib_directory": "/usr/lib/postfix",
    "meta_directory": "/etc/postfix",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "myhostname": "mx." + DOMAIN,
    "mydomain": DOMAIN,
    "myorigin": "$mydomain",
    "mydestination": "",
    "inet_interfaces": "127.0.0.1",
    "inet_protocols": "ipv4",
    "mynetworks": "127.0.0.0/8",
    "smtputf8_enable": "no",
    "biff": "no",
    "alias_maps": "",
    "alias_database": "",
    "local_recipient_maps": "",
    "virtual_mailbox_domains": DOMAIN + ", acme.planapulse.app, globex.planapulse.app",
    "smtp_dns_support_level": "disabled",
    "lmtp_host_lookup": "native",
    "smtp_host_lookup": "native",
    "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
                                "reject_unauth_destination",
    "smtpd_sasl_type": "dovecot",
    "smtpd_sasl_auth_enable": "no",
    "queue_run_delay": "2s",
    "minimal_backoff_time": "2s",
    "maximal_backoff_time": "4s",
    "delay_warning_time": "0",
    "smtpd_banner": "$myhostname ESMTP mxkit-test",
}

POSTFIX_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _options(opts):
    return "".join("\n  -o { %s = %s }" % kv for kv in opts.items())


def postfix_master_cf(smtp_port, sub_port, submission, smtpd, sasl):
    sub_opts = {"syslog_name": "postfix/submission",
                "smtpd_sasl_auth_enable": "yes" if sasl else "no",
                "smtpd_tls_security_level": "none",
                "smtpd_client_restrictions": "",
                "smtpd_relay_restrictions": "permit_sasl_authenticated, reject"}
    sub_opts.update(submission)
    return ("127.0.0.1:%d inet n - n - - smtpd%s\n" % (smtp_port, _options(smtpd))
            + "127.0.0.1:%d inet n - n - - smtpd%s\n" % (sub_port, _options(sub_opts))
            + POSTFIX_SERVICES)


DOVECOT_CONF = """\
# written by mxkit's test stack launcher
base_dir = {d}/dovecot/run
state_dir = {d}/dovecot/state
log_path = {d}/log/dovecot.log
info_log_path = {d}/log/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/dovecot/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/dovecot/users
  default_fields = uid=nobody gid=nogroup home={d}/mail/%d/%n
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service auth {{
  inet_listener auth-postfix {{
    address = 127.0.0.1
    port = {auth}
  }}
}}
protocol lmtp {{
  mail_plugins = $mail_plugins {plugins}
}}
plugin {{
{plugin_settings}}}
{extra}
"""

HAPROXY_GLOBAL = """\
global
  log stderr format raw local0 info
  maxconn 4096
defaults
  mode tcp
  log global
  option tcplog
  timeout connect 5s
  timeout client 60s
  timeout server 60s
"""


def main(argv):
    if len(argv) < 3 or argv[1] not in ("up", "down", "sweep"):
        sys.stderr.write("usage: mxstack.py up|down|sweep DIR [--redis] [--no-sink]\n")
        return 2
    cmd, directory = argv[1], argv[2]
    if cmd == "down":
        st = Stack.load(directory)
        st.stop()
        return 0
    if cmd == "sweep":
        left = sweep(os.path.abspath(directory))
        return 1 if left else 0
    st = Stack(directory=directory, keep=True, out=sys.stderr)
    try:
        st.start_dovecot()
        if "--no-sink" not in argv:
            st.start_sink()
        if "--redis" in argv:
            st.start_redis()
        st.start_postfix()
    except Exception:
        st.dump_logs(sys.stderr)
        st.stop()
        raise
    print(json.dumps(st.save(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
