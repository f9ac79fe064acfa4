"""mxwebhook - a webhook receiver for tests: Python's own http.server on
127.0.0.1, verifying Standard Webhooks signatures with Python's own hmac.

    rx = Receiver()                  # listens on rx.port
    rx.script = [500, 200]           # answers, in order; then rx.default
    rx.requests                      # [(path, headers dict, body bytes)]
    rx.responder = fn                # fn(path, headers, body) -> entry: answers
                                     # by content instead of rx.script
    rx.arrivals                      # time.time() of each request, in order
    verify(secret, headers, body)    # None if good, else why not
    rx.responder = Script()          # answers planned per event subject
    requests_for(rx, subject)        # the requests for one subject, now
    events_for(rx, subject, count)   # ... once count of them have come
    rx.stop(); rx.start()            # down and back up, same port
    guide_code(lang)                 # the consumer example of
                                     # doc/guides/webhook-consumers.md
    run_consumer(lang, code, cases, tmp)  # its handle() on each case
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from email.message import EmailMessage

HERE = os.path.dirname(os.path.abspath(__file__))
GUIDE = os.path.join(HERE, "..", "..", "doc", "guides", "webhook-consumers.md")
# the Standard Webhooks reference library the Node example uses (npm)
STANDARDWEBHOOKS = "standardwebhooks@1.1.1"


def make_secret(raw=b"mxkit-test-webhook-key-32-bytes!"):
    return "whsec_" + base64.b64encode(raw).decode()


def verify(secret, headers, body, tolerance=300):
    """Standard Webhooks v1: HMAC-SHA256(key, id.timestamp.body)."""
    key = base64.b64decode(secret.split("_", 1)[1])
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature", "")
    if not msg_id or not stamp or not sigs:
        return "missing webhook-* headers"
    if abs(time.time() - int(stamp)) > tolerance:
        return "timestamp %s too far from now" % stamp
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for sig in sigs.split():
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, want):
            return None
    return "no matching v1 signature in %r" % sigs


class RawServer:
    """A loopback TCP server on a free port that hands each connection
    to self.session(conn) in a thread of its own: the base of the tests'
    hand-written peers (hostile receivers, LMTP stubs)."""

    def __init__(self, backlog=16):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        raise NotImplementedError


class Receiver:
    def __init__(self, port=0):
        self.requests = []
        self.script = []          # entries: status, or (status, delay, headers)
        self.responder = None
        self.arrivals = []
        self.default = 200
        self.lock = threading.Lock()
        self.port = port
        self.server = None
        self.connections = set()
        self.start()

    def _answer(self, path=None, headers=None, body=None):
        if self.responder is not None:
            entry = self.responder(path, headers, body)
        else:
            with self.lock:
                entry = self.script.pop(0) if self.script else self.default
        if isinstance(entry, int):
            return entry, 0, {}
        return entry

    def start(self):
        rx = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with rx.lock:
                    rx.connections.add(self.connection)

            def finish(self):
                with rx.lock:
                    rx.connections.discard(self.connection)
                super().finish()

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with rx.lock:
                    rx.arrivals.append(time.time())
                status, delay, extra = rx._answer(self.path, headers, body)
                with rx.lock:
                    rx.requests.append((self.path, headers, body))
                if delay:
                    time.sleep(delay)
                reply = b"{}"
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass            # the client gave up (timeout test)

            def log_message(self, fmt, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        """Down as a crashed receiver is: listener and kept-alive
        connections closed."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            for conn in list(self.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.connections.clear()

    def events(self):
        """Requests as (path, headers, parsed JSON, raw body)."""
        with self.lock:
            return [(p, h, json.loads(b), b) for p, h, b in self.requests]


def event_text(part):
    """A text or html part as the event reads it (lmtp-webhook(7)):
    Python's email get_content(), but a text with no charset, which
    Python reads as US-ASCII (each 8-bit byte U+FFFD), or with one
    Python does not know (LookupError), is read as UTF-8, each invalid
    subpart U+FFFD as decode(errors="replace") makes it. None for None."""
    if part is None:
        return None
    charset = part.get_param("charset")
    if charset is not None:
        try:
            return part.get_content()
        except LookupError:
            pass
    return (part.get_payload(decode=True) or b"").decode("utf-8", errors="replace")


def subject_of(body):
    """The Subject: of the bill an event body is about, or None."""
    try:
        return json.loads(body)["data"]["headers"]["subject"]
    except (ValueError, KeyError, TypeError):
        return None


def requests_for(rx, subject):
    """The requests received so far for one subject, as (path, headers,
    parsed JSON, raw body)."""
    with rx.lock:
        got = list(rx.requests)
    return [(p, h, json.loads(b), b) for p, h, b in got if subject_of(b) == subject]


def events_for(rx, subject, count=1, timeout=30):
    """requests_for(), once count have arrived ([] after timeout)."""
    def got():
        evs = requests_for(rx, subject)
        return evs if len(evs) >= count else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evs = got()
        if evs:
            return evs
        time.sleep(0.05)
    return got() or []


class Script:
    """A responder answering by the event's subject: answers[subject] is a
    list of entries (status, or (status, delay, headers)) used in order,
    the last one kept; subjects without a plan get 200. seen[subject]
    holds the time.time() of every request."""

    def __init__(self):
        self.answers = {}
        self.seen = {}
        self.lock = threading.Lock()

    def __call__(self, path, headers, body):
        subject = subject_of(body)
        with self.lock:
            self.seen.setdefault(subject, []).append(time.time())
            plan = self.answers.get(subject)
            if not plan:
                return 200, 0, {}
            entry = plan.pop(0) if len(plan) > 1 else plan[0]
        return entry if isinstance(entry, tuple) else (entry, 0, {})


def strip_dovecot(copy):
    """A maildir copy without the headers Dovecot's LMTP put before the
    message (Return-Path, Delivered-To, its Received), LF -> CRLF: the
    bytes Postfix delivered."""
    lines = copy.split(b"\n")
    i = 0
    if lines[i].startswith(b"Return-Path:"):
        i += 1
    while lines[i].startswith(b"Delivered-To:"):
        i += 1
    if lines[i].startswith(b"Received:") and b"LMTP" in b"\n".join(lines[i:i + 3]):
        i += 1
        while lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\n".join(lines[i:]).replace(b"\n", b"\r\n")


def port_refuses(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def bill(rcpt, subject, size=2000):
    """A bill as the webhook tests send it: text and a PDF of size random
    bytes; Message-ID and Date fixed by the subject."""
    msg = EmailMessage()
    msg["From"] = "Acme Billing <billing@vendor.example>"
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg["Message-ID"] = "<%s@vendor.example>" % hashlib.sha1(subject.encode()).hexdigest()
    msg["Date"] = "Sun, 22 Nov 2026 10:00:00 +0000"
    msg.set_content("Invoice attached.")
    msg.add_attachment(b"%PDF-1.4\n" + os.urandom(size), maintype="application",
                       subtype="pdf", filename="invoice.pdf")
    return msg.as_bytes()


def lmtp_send(st, rcpts, data, sender="billing@vendor.example"):
    """One LMTP transaction straight to Dovecot with smtplib. LMTP answers
    DATA once per accepted recipient (smtplib's sendmail reads only the
    first), so the replies are read one by one. Returns ({rcpt: (code,
    text)} for every recipient not given 250, seconds taken)."""
    started = time.monotonic()
    refused = {}
    with smtplib.LMTP("127.0.0.1", st.port("lmtp"), timeout=60) as c:
        c.ehlo_or_helo_if_needed()
        c.mail(sender)
        accepted = []
        for rcpt in rcpts:
            code, text = c.rcpt(rcpt)
            if code == 250:
                accepted.append(rcpt)
            else:
                refused[rcpt] = (code, text)
        if accepted:
            code, text = c.data(data)
            replies = [(code, text)] + [c.getreply() for _ in accepted[1:]]
            for rcpt, (code, text) in zip(accepted, replies):
                if code != 250:
                    refused[rcpt] = (code, text)
    return refused, time.monotonic() - started


class Strace:
    """strace on the given pids, or -f on the Dovecot master and every
    process it has or forks, with the given filter/injection options
    (quiet: "-q", or "-qq" without exit lines); ok once every pid is
    traced; stop() returns its output."""

    def __init__(self, st, opts, pids=None, quiet="-qq"):
        self.out = st.path("log", "strace-%d.txt" % time.monotonic_ns())
        if pids is not None:
            self._start(opts, pids, quiet)
            return
        master = st.procs["dovecot-master"].pid
        # A process the master forks after pgrep but before strace has
        # reached the master is traced by neither -p nor -f (Dovecot forks
        # its stats process and an lmtp process on the readiness probe's
        # connection just then; a CI run lost the lmtp process that way):
        # when one is found untraced once strace is attached, it starts again.
        for _ in range(5):
            self._start(["-f"] + opts, [master] + self._children(master), quiet)
            self.missed = [p for p in self._children(master) if not self._traced(p)]
            if not self.ok or not self.missed:
                break
            self.stop()
        self.ok = self.ok and not self.missed

    def _start(self, opts, pids, quiet):
        from mxtest import wait_for   # only the tests have mxtest
        self.pids, self.missed = list(pids), []
        self.proc = subprocess.Popen(["strace", quiet, "-y", "-o", self.out] + opts
                                     + sum((["-p", str(p)] for p in pids), []),
                                     stderr=subprocess.PIPE, text=True)
        self.ok = wait_for(lambda: self.proc.poll() is not None or all(
            self._traced(p) for p in pids), timeout=10) and self.proc.poll() is None

    @staticmethod
    def _children(pid):
        return [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                               text=True).stdout.split()]

    def why_not(self):
        """Why ok is False, for a test's diagnostics."""
        if self.proc.poll() is not None:
            return self.proc.stderr.read()
        if self.missed:
            return "still untraced after 5 starts: pids %s" % self.missed
        return "strace did not attach within 10 s"

    @staticmethod
    def _traced(pid):
        try:
            with open("/proc/%d/status" % pid) as f:
                return any(ln.startswith("TracerPid:") and ln.split()[1] != "0" for ln in f)
        except OSError:
            return True                     # gone: nothing to wait for

    def _dying(self):
        """Some tracee is exiting (killed, not reaped yet): a zombie, or
        still in do_exit (PF_EXITING). A killed client's peer sees the
        connection close in do_exit, before the zombie: checking for "Z"
        alone let stop() interrupt strace before its "+++ killed" line."""
        for p in self.pids:
            try:
                with open("/proc/%d/stat" % p) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] == "Z" or int(fields[6]) & 0x4:     # PF_EXITING
                    return True
            except (OSError, IndexError, ValueError):
                pass
        return False

    def stop(self, timeout=15):
        # every tracee gone (killed): strace ends by itself once it has
        # written how each ended; a SIGINT first may lose that last line
        def gone():
            return not any(os.path.exists("/proc/%d" % p) for p in self.pids)
        for _ in range(50):             # a zombie is reaped by its parent soon
            if gone() or not self._dying():
                break
            time.sleep(0.1)
        if self.proc.poll() is None and gone():
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            with open(self.out) as f:
                return f.read()
        except OSError:
            return ""


def read_event(path):
    """(header dict, body bytes) of a spool event file, or (None, why)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, "unreadable: %s" % e
    head, nl, body = data.partition(b"\n")
    try:
        meta = json.loads(head)
    except ValueError:
        return None, "header not JSON: %r" % head[:200]
    if not nl or meta.get("id") != os.path.basename(path) \
            or meta.get("body_length") != len(body):
        return None, "not whole: id %r body_length %r, %d bytes follow" % (
            meta.get("id"), meta.get("body_length"), len(body))
    try:
        json.loads(body)
    except ValueError:
        return None, "body not JSON"
    return meta, body


def start_spool_dovecot(st, route_url, secret, plugin_dir, fsync=None, quota=None,
                        more=None, dovecot_conf="", sieve=False):
    """A spool owned by nobody, its secret and spool.conf, and Dovecot LMTP
    with the plugin routing bills@*.planapulse.app to route_url; with
    quota (a storage rule), Dovecot's quota plugin beside ours in one
    plugin directory; with sieve, Pigeonhole's sieve plugin before ours
    (each user's ~/.dovecot.sieve); fsync: mail_fsync; more: other plugin
    settings; dovecot_conf: more lines of dovecot.conf."""
    for sub in ("", "tmp", "active", "dead"):
        os.makedirs(st.path("spool", sub), exist_ok=True)
        shutil.chown(st.path("spool", sub), "nobody", "nogroup")
    with open(st.path("secret"), "w") as f:
        f.write(secret + "\n")
    with open(st.path("spool.conf"), "w") as f:
        f.write("spool_dir = %s\nsecret_file = %s\ntimeout = 5s\n"
                % (st.path("spool"), st.path("secret")))
    if quota or sieve:
        own, plugin_dir = plugin_dir, st.path("plugins")
        os.makedirs(plugin_dir)
        for so in [os.path.join(own, "lib95_lmtp_webhook_plugin.so")] + \
                (["/usr/lib/dovecot/modules/lib10_quota_plugin.so"] if quota else []) + \
                (["/usr/lib/dovecot/modules/lib90_sieve_plugin.so"] if sieve else []):
            if not os.path.exists(so):
                raise RuntimeError("%s is missing (contrib/install-deps)" % so)
            os.symlink(so, os.path.join(plugin_dir, os.path.basename(so)))
    extra = "mail_plugin_dir = %s\n%s" % (plugin_dir, dovecot_conf)
    if fsync:
        extra += "mail_fsync = %s\n" % fsync
    settings = {"lmtp_webhook_route": "bills@*.planapulse.app " + route_url,
                "lmtp_webhook_spool_dir": st.path("spool")}
    settings.update(more or {})
    if quota:               # a save Dovecot refuses
        settings.update({"quota": "maildir:User quota", "quota_rule": "*:storage=" + quota})
    if sieve:
        settings.update({"sieve": "file:~/sieve;active=~/.dovecot.sieve",
                         "sieve_max_redirects": "2"})
    plugins = " ".join((["quota"] if quota else []) + (["sieve"] if sieve else []) +
                       ["lmtp_webhook"])
    st.start_dovecot(lmtp_plugins=plugins, plugin_settings=settings, extra=extra)


class Runner:
    """lmtp-webhook-spool run (from the build under test) in a stack,
    restartable; its configuration is the stack's spool.conf."""

    def __init__(self, st):
        self.st = st
        self.proc = None

    def start(self, env=None):
        from mxtest import build_path, wait_for   # only the tests have mxtest
        mark = len(self.st.read_log("spool")) if "spool" in self.st.logs else 0
        tool = build_path("lmtp-webhook", "lmtp-webhook-spool")
        self.proc = self.st.start_daemon("spool", [tool, "-c", self.st.path("spool.conf"),
                                                   "-f", "run"], env=env)
        if not wait_for(lambda: "delivering" in self.st.read_log("spool")[mark:], timeout=10):
            raise SystemExit("lmtp-webhook-spool run did not start:\n"
                             + self.st.read_log("spool"))
        return self.proc

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self.proc = None
        return rc

    def log(self):
        return self.st.read_log("spool")


# -- the consumer examples of doc/guides/webhook-consumers.md -------------

def guide_code(lang):
    """The guide's one fenced block tagged lang (python, javascript, go)
    that defines handle()/Handle()."""
    with open(GUIDE) as f:
        text = f.read()
    blocks = [m.group(2) for m in re.finditer(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", text,
                                              re.M | re.S) if m.group(1).strip() == lang]
    blocks = [b for b in blocks if re.search(r"\b(handle|Handle)\b", b)]
    if len(blocks) != 1:
        raise SystemExit("%s: expected one %s block with handle(), found %d"
                         % (GUIDE, lang, len(blocks)))
    return blocks[0]


def npm_standardwebhooks(cache=None):
    """A node_modules directory holding the reference library, installed
    with npm at test time (into a cache directory reused by later runs).
    Fails loudly when npm cannot fetch it: the Node example is checked
    with the real library or not at all."""
    cache = cache or os.environ.get("MXKIT_NPM_CACHE",
                                    "/tmp/mxkit-npm-" + STANDARDWEBHOOKS.replace("@", "-"))
    mods = os.path.join(cache, "node_modules")
    if os.path.isfile(os.path.join(mods, "standardwebhooks", "package.json")):
        return mods
    os.makedirs(cache, exist_ok=True)
    res = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save",
                          "--prefix", cache, STANDARDWEBHOOKS],
                         capture_output=True, text=True, timeout=300)
    if res.returncode != 0 or not os.path.isdir(os.path.join(mods, "standardwebhooks")):
        raise SystemExit("npm install %s failed (the Node consumer example needs it):\n%s%s"
                         % (STANDARDWEBHOOKS, res.stdout, res.stderr))
    return mods


def _run_python(code, cases):
    """handle() on each case; one that raises is "raised ExcType: ..."
    (a consumer must answer hostile input, never throw on it)."""
    ns = {}
    exec(compile(code, "guide-python", "exec"), ns)
    out = []
    for c in cases:
        try:
            out.append(ns["handle"](c["secrets"], c["headers"], c["body"].encode()))
        except Exception as e:      # noqa: BLE001 - reported as the case's result
            out.append("raised %s: %s" % (type(e).__name__, e))
    return out


def _run_node(code, cases, tmp):
    d = tempfile.mkdtemp(dir=tmp)
    with open(os.path.join(d, "consumer.js"), "w") as f:
        f.write(code)
    with open(os.path.join(d, "main.js"), "w") as f:
        f.write("const {handle} = require('./consumer.js');\n"
                "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
                "console.log(JSON.stringify(cases.map(c => handle(c.secrets, c.headers, "
                "Buffer.from(c.body, 'utf8')))));\n")
    env = dict(os.environ, NODE_PATH=npm_standardwebhooks())
    res = subprocess.run(["node", os.path.join(d, "main.js")], input=json.dumps(cases),
                         capture_output=True, text=True, timeout=120, env=env)
    return json.loads(res.stdout) if res.returncode == 0 else res.stdout + res.stderr


def _run_go(code, cases, tmp):
    d = tempfile.mkdtemp(dir=tmp)
    with open(os.path.join(d, "go.mod"), "w") as f:
        f.write("module webhook\n\ngo 1.19\n")
    with open(os.path.join(d, "webhook.go"), "w") as f:
        f.write(code)
    with open(os.path.join(d, "cases.json"), "w") as f:
        json.dump(cases, f)
    with open(os.path.join(d, "webhook_test.go"), "w") as f:
        f.write('''package webhook
import ("encoding/json"; "fmt"; "os"; "testing")
type c struct { Secrets []string; Headers map[string]string; Body string }
func TestGuide(t *testing.T) {
	data, _ := os.ReadFile("cases.json")
	var cases []c
	json.Unmarshal(data, &cases)
	out := []string{}
	for _, k := range cases {
		out = append(out, Handle(k.Secrets, k.Headers, []byte(k.Body)))
	}
	b, _ := json.Marshal(out)
	fmt.Println("RESULT", string(b))
}
''')
    env = dict(os.environ, HOME=d, GOCACHE=os.path.join(d, "cache"), GOFLAGS="-mod=mod",
               GOPATH=os.path.join(d, "gopath"), GO111MODULE="on", GOPROXY="off")
    res = subprocess.run(["go", "test", "-v", "./..."], cwd=d, env=env, capture_output=True,
                         text=True, timeout=300)
    m = re.search(r"^RESULT (.*)$", res.stdout, re.M)
    return json.loads(m.group(1)) if m else res.stdout + res.stderr


def run_consumer(lang, code, cases, tmp):
    """The guide's handle(secrets, headers, body) on each case ({"secrets":
    [...], "headers": {webhook-*}, "body": str}): a list of "accept",
    "quarantine" or "reject", or the error output as a string."""
    if lang == "python":
        return _run_python(code, cases)
    if lang == "javascript":
        return _run_node(code, cases, tmp)
    return _run_go(code, cases, tmp)


def sign(secret, msg_id, stamp, body):
    """A v1 signature with Python's hmac (the tests' own signer)."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = msg_id.encode() + b"." + str(stamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


# -- spool files written and read by hand (the spool attack tests) ---------

def spool_names(st, sub):
    """The names in the stack's spool/sub, sorted ([] when it is not there)."""
    d = st.path("spool", sub)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def write_spool_conf(st, **extra):
    """spool.conf for the stack's spool and secret (timeout 2s), plus extra."""
    conf = {"spool_dir": st.path("spool"), "secret_file": st.path("secret"), "timeout": "2s"}
    conf.update(extra)
    with open(st.path("spool.conf"), "w") as f:
        for k, v in conf.items():
            f.write("%s = %s\n" % (k, v))


def spool_body(tag, pad=0):
    """A test event body that names its tag."""
    return json.dumps({"type": "test", "tag": tag, "pad": "p" * pad},
                      separators=(",", ":")).encode()


def body_tag(body):
    try:
        return json.loads(body).get("tag")
    except (ValueError, AttributeError):
        return None


def spool_event_bytes(eid, url, body, attempts=0, created=None, next_attempt=0,
                      last_error=None, held=None):
    """An event file's bytes: its header line (held only when given), its body."""
    head = {"id": eid, "url": url, "created": int(created or time.time()),
            "attempts": attempts, "next_attempt": next_attempt, "last_error": last_error,
            "body_length": len(body)}
    if held is not None:
        head["held"] = held
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + body


def spool_header(st, eid, sub="active"):
    """The header of spool/sub/eid as a dict, or None."""
    try:
        with open(st.path("spool", sub, eid), "rb") as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None
