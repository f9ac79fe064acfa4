#!/usr/bin/python3
"""The launcher's teardown is itself tested: a test that fails midway
(an exception, a failed assertion, or SIGTERM from a runner's timeout)
leaves no daemon and no listening port behind, and prints the logs."""

import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from mxstack import port_open, processes_in  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402

CHILD = r"""
import os, sys, time
sys.path.insert(0, %(lib)r)
from mxstack import Stack, processes_in
from mxtest import tap
mode = sys.argv[1]
with Stack("teardown") as st:
    tap.stack = st
    st.start_dovecot(); st.start_sink(); st.start_redis(); st.start_postfix()
    st.start_haproxy('''
frontend fe
  bind 127.0.0.1:{port:haproxy}
  default_backend be
backend be
  server pf 127.0.0.1:{port:postfix-smtp} send-proxy-v2
''' .replace("{port:haproxy}", str(st.port("haproxy"))), wait_ports=[st.port("haproxy")])
    print("DIR " + st.dir, flush=True)
    print("PROCS " + str(len(processes_in(st.dir))), flush=True)
    print("PORTS " + " ".join(str(p) for p in st.ports.values()), flush=True)
    if mode == "exception":
        raise RuntimeError("deliberate failure midway")
    if mode == "assert":
        tap.ok(False, "deliberate failed assertion")
    if mode == "signal":
        time.sleep(120)
sys.exit(tap.done())
"""


def run_child(mode):
    proc = subprocess.Popen([sys.executable, "-c", CHILD % {"lib": os.path.join(HERE, "..", "lib")},
                             mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    directory, ports, lines, procs = None, [], [], 0
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("DIR "):
            directory = line.split()[1]
        if line.startswith("PROCS "):
            procs = int(line.split()[1])
        if line.startswith("PORTS "):
            ports = [int(p) for p in line.split()[1:]]
            if mode == "signal":
                time.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    return proc.returncode, directory, ports, "".join(lines), procs


for mode in ("exception", "assert", "signal"):
    rc, directory, ports, out, procs = run_child(mode)
    tap.ok(procs >= 8, "%s: the process finder sees the running daemons (%d)" % (mode, procs))
    tap.ok(directory is not None and len(ports) >= 7,
           "%s: child booted postfix, dovecot, redis, sink, haproxy" % mode, diag=out[-3000:])
    tap.ok(rc != 0, "%s: child exits non-zero (%s)" % (mode, rc))
    tap.ok("# ---- log: postfix" in out and "# ---- log: dovecot" in out,
           "%s: daemon logs printed on failure" % mode, diag=out[-1500:])
    left = processes_in(directory) if directory else ["?"]
    tap.is_(left, [], "%s: no process left in the stack directory" % mode)
    still = wait_for(lambda: not [p for p in ports if port_open(p)], timeout=5)
    tap.ok(still, "%s: every stack port is closed" % mode,
           diag=str([p for p in ports if port_open(p)]))
    tap.ok(directory is not None and not os.path.exists(directory),
           "%s: stack directory removed" % mode)
    with open("/etc/postfix/main.cf") as f:
        tap.ok(directory is not None and directory not in f.read(),
               "%s: alternate_config_directories entry removed" % mode)

sys.exit(tap.done())
