"""mxdkim - helpers for milter-dkim tests: generate keys with
milter-dkim-keygen, publish their TXT records in a libopendkim query file
and to dkimpy (python3-dkim) through a dnsfunc, write OpenDKIM-format
tables, start the milter under a Stack."""

import os
import re
import subprocess

from mxtest import build_path

MILTER = build_path("milter-dkim", "milter-dkim")
KEYGEN = build_path("milter-dkim", "milter-dkim-keygen")


class Dns:
    """TXT records as milter-dkim-keygen printed them (BIND format)."""

    def __init__(self, path):
        self.path = path
        self.records = {}

    def add_bind(self, text):
        name = text.split()[0].rstrip(".")
        self.records[name] = "".join(re.findall(r'"([^"]*)"', text))
        self.write()
        return name

    def write(self):
        with open(self.path, "w") as f:
            for name, value in self.records.items():
                f.write("%s %s\n" % (name, value))

    def dnsfunc(self, name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        value = self.records.get(name.rstrip("."))
        return value.encode() if value else None


def keygen(st, dns, domain, selector, kind="rsa", bits=2048):
    d = st.path("keys")
    os.makedirs(d, exist_ok=True)
    res = subprocess.run([KEYGEN, "-d", domain, "-s", selector, "-t", kind, "-b", str(bits),
                          "-D", d], capture_output=True, text=True, check=True)
    dns.add_bind(res.stdout)
    return os.path.join(d, selector + ".private"), res.stdout


def start_milter(st, name, conf_text):
    port = st.port(name)
    conf = st.path("etc", name + ".conf")
    with open(conf, "w") as f:
        f.write(conf_text.replace("{port}", str(port)).replace("{dir}", st.dir))
    proc = st.start_daemon(name, [MILTER, "-f", "-c", conf], port=port)
    return proc, port, conf


def crlf(message):
    if isinstance(message, str):
        message = message.encode()
    return re.sub(rb"(?<!\r)\n", b"\r\n", message)


def strip_sink_headers(message):
    """smtp-sink prepends X-Client-Addr ... X-Rcpt-Args; the message
    itself starts after them."""
    lines = message.split("\n")
    while lines and re.match(r"^X-(Client|Helo|Mail|Rcpt)-", lines[0]):
        lines.pop(0)
    return "\n".join(lines)
