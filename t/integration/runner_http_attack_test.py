#!/usr/bin/python3
"""lmtp-webhook-spool run against hostile HTTP receivers (loopback only):
what an answer means when it is cut, and who waits for whom.

- A 429/503 with Retry-After whose body is then cut, stalls past the
  timeout, or runs past the 64 KB the runner reads: Retry-After holds.
  A 410 whose body is cut or too long: dropped. (post_finish() used to
  look at the status only when curl returned OK.)
- A 2xx status line whose header section never ends (FIN, stall, RST):
  a failed attempt, kept. A 2xx whose header section is whole and whose
  body is cut: delivered (the man page's rule).
- An event tried once and older than dead_letter_after when the runner
  comes back: posted (delivered on 200; to dead/ only after its failed
  attempt).
- Fairness: 200 events for a receiver that never answers, 5 for a live
  one (concurrency 8, timeout 2s): the live ones are posted at once,
  not after the dead one's backlog; a live event spooled later waits
  at most about the timeout.
- The retry jitter differs between two runs of the runner (random()
  seeded).
"""

import json
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import RawServer, make_secret, spool_body, spool_event_bytes  # noqa: E402

SECRET = make_secret()
TOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")


class Hostile(RawServer):
    """Reads the request (head and body), then hands the connection to
    answer(mode, conn)."""

    def __init__(self, answer):
        self.answer = answer
        self.hits = []
        self.lock = threading.Lock()
        super().__init__(backlog=256)

    def session(self, conn):
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            mode = lines[0].split(" ")[1].strip("/")
            fields = dict((k.strip().lower(), v.strip()) for k, _, v in
                          (line.partition(":") for line in lines[1:]))
            with self.lock:
                self.hits.append((time.time(), mode, fields.get("webhook-id")))
            want = int(fields.get("content-length", 0))
            while len(body) < want:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            self.answer(mode, conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def ids(self, mode=None):
        with self.lock:
            return [h[2] for h in self.hits if mode is None or h[1] == mode]


def rst(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")


def answer(mode, conn):
    code = {"ra429": b"429 Slow", "ra503": b"503 Busy", "gone": b"410 Gone",
            "ok": b"200 OK"}.get(mode.split("-")[0], b"200 OK")
    ra = b"Retry-After: 3600\r\n" if mode.startswith("ra") else b""
    if mode.endswith("-cut"):
        conn.sendall(b"HTTP/1.1 " + code + b"\r\n" + ra + b"Content-Length: 100\r\n\r\npart")
    elif mode.endswith("-stall"):
        conn.sendall(b"HTTP/1.1 " + code + b"\r\n" + ra + b"Content-Length: 100\r\n\r\npart")
        time.sleep(4)
    elif mode.endswith("-big"):
        conn.sendall(b"HTTP/1.1 " + code + b"\r\n" + ra + b"Content-Length: 1000000\r\n\r\n")
        for _ in range(20):
            conn.sendall(b"x" * 50000)
    elif mode == "headfin":
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        conn.shutdown(socket.SHUT_WR)
        time.sleep(1)
    elif mode == "headstall":
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-A: b\r\n")
        time.sleep(4)
    elif mode == "headrst":
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-A: b")
        time.sleep(0.2)
        rst(conn)
    elif mode == "hang":
        time.sleep(30)
    elif mode == "fail":
        conn.sendall(b"HTTP/1.1 500 No\r\nContent-Length: 0\r\n\r\n")
    else:
        conn.sendall(b"HTTP/1.1 " + code + b"\r\n" + ra + b"Content-Length: 2\r\n\r\nok")


class Spool:
    """A spool of its own and its runner (-f run), under the stack."""

    def __init__(self, st, name, **conf):
        self.st, self.name = st, name
        self.dir = st.path(name)
        for sub in ("active", "tmp", "dead"):
            os.makedirs(os.path.join(self.dir, "spool", sub))
        with open(os.path.join(self.dir, "secret"), "w") as f:
            f.write(SECRET + "\n")
        os.chmod(os.path.join(self.dir, "secret"), 0o600)
        c = {"spool_dir": self.dir + "/spool", "secret_file": self.dir + "/secret",
             "timeout": "2s"}
        c.update(conf)
        with open(os.path.join(self.dir, "spool.conf"), "w") as f:
            f.writelines("%s = %s\n" % kv for kv in c.items())
        self.proc = None

    def put(self, eid, url, body=None, mtime=None, **head):
        data = spool_event_bytes(eid, url, body or spool_body(eid), **head)
        tmp = os.path.join(self.dir, "spool", "tmp", "put." + eid)
        with open(tmp, "wb") as f:
            f.write(data)
        if mtime:
            os.utime(tmp, (mtime, mtime))
        os.rename(tmp, os.path.join(self.dir, "spool", "active", eid))

    def header(self, eid, sub="active"):
        try:
            with open(os.path.join(self.dir, "spool", sub, eid), "rb") as f:
                return json.loads(f.readline())
        except (OSError, ValueError):
            return None

    def start(self):
        self.proc = self.st.start_daemon(self.name, [
            TOOL, "-c", os.path.join(self.dir, "spool.conf"), "-f", "run"])
        if not wait_for(lambda: "delivering" in self.log(), timeout=10):
            raise SystemExit("the runner did not start:\n" + self.log())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def log(self):
        return self.st.read_log(self.name)


def test_cut_answers(st, url):
    sp = Spool(st, "cut")
    modes = ["ra429-whole", "ra429-cut", "ra429-stall", "ra429-big", "ra503-cut",
             "ra503-big", "gone-cut", "gone-big", "ok-cut", "headfin", "headstall",
             "headrst"]
    for m in modes:
        sp.put("ev_" + m.replace("-", "_"), url + m)
    t0 = time.time()
    sp.start()
    wait_for(lambda: all(sp.header("ev_" + m.replace("-", "_")) is None
                         or sp.header("ev_" + m.replace("-", "_"))["attempts"] > 0
                         for m in modes), timeout=15)
    sp.stop()
    for m in modes:
        h = sp.header("ev_" + m.replace("-", "_"))
        if m.startswith("ra"):
            tap.ok(h is not None and h["attempts"] == 1 and h["next_attempt"] >= t0 + 3000,
                   "%s: Retry-After 3600 holds whatever the body did" % m, diag=h)
        elif m.startswith("gone") or m == "ok-cut":
            tap.ok(h is None, "%s: its status decides (removed), its body cut" % m, diag=h)
        else:
            tap.ok(h is not None and h["attempts"] >= 1,
                   "%s: a 200 whose header section never ended is a failed attempt" % m,
                   diag=h)


def test_outage(st, url):
    sp = Spool(st, "outage")
    c = int(time.time()) - 4 * 86400
    sp.put("ev_tried", url + "ok", created=c, attempts=1, next_attempt=c + 300,
           last_error="HTTP status 503", mtime=c + 300)
    sp.put("ev_tried_fail", url + "fail", created=c, attempts=1, next_attempt=c + 300,
           last_error="HTTP status 503", mtime=c + 300)
    sp.start()
    wait_for(lambda: sp.header("ev_tried") is None
             and sp.header("ev_tried_fail", "dead") is not None, timeout=10)
    sp.stop()
    log = sp.log()
    tap.ok(sp.header("ev_tried") is None and sp.header("ev_tried", "dead") is None
           and "event ev_tried delivered" in log,
           "tried once, older than dead_letter_after after an outage: posted, delivered",
           diag=log)
    d = sp.header("ev_tried_fail", "dead")
    tap.ok(d is not None and d["attempts"] == 2 and "attempt 2" in log,
           "the same failing: dead-lettered after that attempt, not before", diag=log)


def test_fair(st, rx):
    sp = Spool(st, "fair", concurrency="8")
    other = Hostile(answer)         # another origin: another port
    dead = "http://127.0.0.1:%d/hang" % other.port
    live = "http://127.0.0.1:%d/live" % rx.port
    for i in range(200):
        sp.put("a%05d" % i, dead)
    for i in range(5):
        sp.put("z%05d" % i, live)
    t0 = time.time()
    sp.start()
    wait_for(lambda: len(rx.ids("live")) >= 5, timeout=40)
    at = sorted(t for t, m, _ in rx.hits if m == "live")
    tap.ok(len(at) == 5 and at[-1] - t0 < 4,
           "a live receiver's events are not held back by a dead one's backlog "
           "(concurrency 8, timeout 2s)",
           diag="live posted after %s s" % ["%.1f" % (t - t0) for t in at])
    time.sleep(3)
    t1 = time.time()
    sp.put("znew", live)
    wait_for(lambda: "znew" in rx.ids("live"), timeout=30)
    at = [t for t, m, i in rx.hits if i == "znew"]
    tap.ok(at and at[0] - t1 < 2 + 2,
           "a live event spooled during the dead backlog waits at most about the timeout",
           diag="%s" % ["%.1f" % (t - t1) for t in at])
    sp.proc.kill()
    sp.proc.wait()


def test_jitter(st, url):
    seqs = []
    for run in ("j1", "j2"):
        sp = Spool(st, run)
        for i in range(8):
            sp.put("ev_%s_%d" % (run, i), url + "fail", attempts=1)
        sp.start()
        wait_for(lambda: len(re.findall(r"next in \d+s", sp.log())) >= 8, timeout=10)
        sp.stop()
        seqs.append(sorted(int(x) for x in re.findall(r"next in (\d+)s", sp.log())))
    tap.ok(len(seqs[0]) == 8 and seqs[0] != seqs[1],
           "two runs of the runner draw different retry jitter (random() seeded)",
           diag=seqs)


with Stack("runner-http-attack") as st:
    tap.stack = st
    rx = Hostile(answer)
    url = "http://127.0.0.1:%d/" % rx.port
    only = os.environ.get("ATTACK_ONLY", "")
    for name, t, arg in (("cut", test_cut_answers, url), ("outage", test_outage, url), ("fair", test_fair, rx),
                         ("jitter", test_jitter, url)):
        if not only or name in only.split(","):
            t0 = time.time()
            t(st, arg)
            tap.diag("%s: %.1f s" % (name, time.time() - t0))

sys.exit(tap.done())
