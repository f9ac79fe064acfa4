"""mxdns - a real authoritative DNS server (Knot DNS) for integration tests.

    from mxdns import Knot, txt
    with Stack("mytest") as st:
        dns = Knot(st, {
            "vendor.test": [
                txt("@", "v=spf1 ip4:127.0.0.2 -all"),
                txt("sel._domainkey", "v=DKIM1; k=rsa; p=" + pub),   # split for you
                txt("_dmarc", "v=DMARC1; p=reject"),
                "mail A 127.0.0.2",
            ],
            "spoof.test": [],
        })
        dns.start()                      # fails loudly with knotd's log
        dns.servers                      # "127.0.0.1:PORT", for dns_servers =
        dns.set_zone("vendor.test", [...])   # rewrite + reload, waits until served
        dns.add_zone("other.test", [...])    # a new zone while running
        dns.stop(); dns.start()          # "DNS server down" and back
        dns.pause(); dns.resume()        # SIGSTOP/SIGCONT: queries time out
        dns.query("TXT", "_dmarc.vendor.test")  # kdig +short, list of lines

knotd runs in the foreground under the stack (its log is the stack's
"knot" log, printed when a test fails; teardown kills it like any other
daemon). Records are zone-file lines relative to the zone (one per list
item); SOA and NS are added, the default TTL is 0 so that no resolver
cache hides a change. The server listens on 127.0.0.1 and ::1 (when the
host has IPv6 loopback) on one port for UDP and TCP.
"""

import os
import signal
import socket
import subprocess
import time

from mxstack import StackError, wait_port


def txt(owner, value, ttl=None):
    """A TXT line; values longer than 255 bytes are split into several
    character-strings (RFC 7208 3.3), quotes and backslashes escaped."""
    raw = value.encode() if isinstance(value, str) else value
    parts = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    quoted = []
    for part in parts:
        out = ""
        for byte in part:
            if byte in (0x22, 0x5c):
                out += "\\" + chr(byte)
            elif 0x20 <= byte < 0x7f:
                out += chr(byte)
            else:
                out += "\\%03d" % byte
        quoted.append('"%s"' % out)
    return "%s %sTXT %s" % (owner, "%d " % ttl if ttl is not None else "", " ".join(quoted))


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Knot:
    def __init__(self, stack, zones=None, name="knot"):
        self.st = stack
        self.name = name
        self.zones = {}
        self.serials = {}
        self.base = stack.path(name)
        self.port = stack.port(name)
        self.ipv6 = _has_ipv6_loopback()
        for sub in ("run", "db", "zones"):
            os.makedirs(os.path.join(self.base, sub), exist_ok=True)
        self.conf = os.path.join(self.base, "knot.conf")
        self.sock = os.path.join(self.base, "run", "knot.sock")
        self.proc = None
        for zone, records in (zones or {}).items():
            self._write_zone(zone, records)

    @property
    def servers(self):
        return "127.0.0.1:%d" % self.port

    # ------------------------------------------------------------ files
    def _write_zone(self, zone, records):
        zone = zone.rstrip(".")
        serial = self.serials.get(zone, 0) + 1
        self.serials[zone] = serial
        self.zones[zone] = list(records)
        lines = ["$ORIGIN %s." % zone, "$TTL 0",
                 "@ SOA ns.%s. hostmaster.%s. %d 3600 600 86400 0" % (zone, zone, serial),
                 "@ NS ns.%s." % zone, "ns A 127.0.0.1"]
        lines += list(records)
        path = os.path.join(self.base, "zones", zone + ".zone")
        with open(path + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(path + ".tmp", path)

    def _write_conf(self):
        listen = "    listen: 127.0.0.1@%d\n" % self.port
        if self.ipv6:
            listen += "    listen: ::1@%d\n" % self.port
        zones = "".join("  - domain: %s\n" % z for z in sorted(self.zones))
        conf = ("server:\n    rundir: {b}/run\n{listen}"
                "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
                "control:\n    listen: {sock}\n"
                "log:\n  - target: stderr\n    any: info\n"
                "database:\n    storage: {b}/db\n"
                "template:\n  - id: default\n    storage: {b}/zones\n"
                "    file: \"%s.zone\"\n    zonefile-sync: -1\n    zonefile-load: whole\n"
                "    journal-content: none\n    semantic-checks: off\n"
                "zone:\n{zones}").format(b=self.base, listen=listen, sock=self.sock,
                                         zones=zones or "  []\n")
        if not zones:
            conf = conf.replace("zone:\n  []\n", "")
        with open(self.conf, "w") as f:
            f.write(conf)

    # ------------------------------------------------------------ control
    def _knotc(self, *args):
        res = subprocess.run(["knotc", "-c", self.conf, "-t", "10"] + list(args),
                             capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            self.st.failed = True
            raise StackError("knotc %s failed: %s%s\n%s" % (
                " ".join(args), res.stdout, res.stderr, self.st.read_log(self.name)))
        return res.stdout

    def query(self, rrtype, name, server="127.0.0.1", timeout=2):
        """kdig +short against the server: the answer's lines ([] if none)."""
        res = subprocess.run(["kdig", "@%s" % server, "-p", str(self.port), "+short",
                              "+timeout=%d" % timeout, "+retry=0", rrtype, name],
                             capture_output=True, text=True, timeout=timeout + 10)
        return [line for line in res.stdout.splitlines() if line and not line.startswith(";")]

    def _wait_serial(self, zone, timeout=20.0):
        want = str(self.serials[zone])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            soa = self.query("SOA", zone, timeout=1)
            if soa and soa[0].split()[2] == want:
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            if any(("[%s.]" % zone) in line and ("error" in line or "failed" in line)
                   for line in self.st.read_log(self.name).splitlines()):
                break                  # knotd said it will not load it
            time.sleep(0.05)
        self.st.failed = True
        raise StackError("knotd does not serve %s serial %s; its log:\n%s" % (
            zone, want, self.st.read_log(self.name)))

    def start(self):
        """Start knotd (again, after stop()) and wait until every zone is
        served; raises StackError with knotd's log otherwise."""
        self._write_conf()
        check = subprocess.run(["knotc", "-c", self.conf, "conf-check"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            self.st.failed = True
            raise StackError("knotd rejects its configuration:\n%s%s" % (check.stdout,
                                                                            check.stderr))
        self.proc = self.st._spawn(self.name, ["knotd", "-c", self.conf],
                                   self.st.path("log", self.name + ".log"))
        if not wait_port(self.port, proc=self.proc):
            self.st.failed = True
            raise StackError("knotd did not start on 127.0.0.1:%d; its log:\n%s" % (
                self.port, self.st.read_log(self.name)))
        for zone in self.zones:
            self._wait_serial(zone)
        return self

    def stop(self):
        """Stop knotd: queries then get ICMP port unreachable."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.st.procs.pop(self.name, None)
            self.proc = None

    def pause(self):
        """SIGSTOP: the socket stays open and queries go unanswered."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def set_zone(self, zone, records):
        """Replace a zone's records and reload it; returns once served."""
        zone = zone.rstrip(".")
        if zone not in self.zones:
            return self.add_zone(zone, records)
        self._write_zone(zone, records)
        if self.proc is not None:
            self._knotc("zone-reload", zone)
            self._wait_serial(zone)

    def add_zone(self, zone, records):
        """A new zone while running (configuration reload)."""
        zone = zone.rstrip(".")
        self._write_zone(zone, records)
        self._write_conf()
        if self.proc is not None:
            self._knotc("reload")
            self._wait_serial(zone)
