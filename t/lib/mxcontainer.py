"""mxcontainer - podman for the container tests: the base image made
locally (no registry here: mmdebstrap, podman import, cached in podman's
storage between runs), the images built from this tree's Containerfiles,
and the overlay that lets contrib/kubernetes/ and contrib/compose/ run
with host networking on a shared machine (ports renamed to free loopback
ports, images to the local ones; nothing else changed)."""

import json
import os
import re
import subprocess
import tempfile
import time

from mxtest import src_path

CONF = src_path("contrib", "container", "containers.conf")
ENV = dict(os.environ, CONTAINERS_CONF=CONF)
BASE = "docker.io/library/debian:bookworm-slim"
MXKIT = "localhost/mxkit:test"
MAILSERVER = "localhost/mxkit-test-mailserver:latest"
REDIS = "localhost/mxkit-test-redis:latest"


def podman(*args, timeout=600, check=False, input=None):
    res = subprocess.run(["podman"] + list(args), capture_output=True, text=True,
                         timeout=timeout, env=ENV, input=input)
    if check and res.returncode != 0:
        raise RuntimeError("podman %s: %s%s" % (" ".join(args), res.stdout, res.stderr))
    return res


def image_size(name):
    res = podman("image", "inspect", name, "--format", "{{.Size}}", check=True)
    return int(res.stdout.strip())


def ensure_base(log):
    """debian:bookworm-slim from Debian's mirror, once per machine."""
    if podman("image", "exists", BASE).returncode == 0:
        log("base image %s: cached" % BASE)
        return 0.0
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        tar = os.path.join(d, "rootfs.tar")
        res = subprocess.run(["mmdebstrap", "--variant=apt", "bookworm", tar],
                             capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            raise RuntimeError("mmdebstrap: %s" % res.stderr[-3000:])
        podman("import", tar, BASE, check=True)
    log("base image %s: made with mmdebstrap in %.0f s" % (BASE, time.monotonic() - t0))
    return time.monotonic() - t0


def build(containerfile, tag, context=None, log=print):
    """Build with podman's layer cache (a Containerfile change rebuilds
    from the changed step); returns the seconds it took."""
    t0 = time.monotonic()
    res = podman("build", "--pull=never", "--layers", "-f", src_path(*containerfile.split("/")),
                 "-t", tag, context or src_path(), timeout=1500)
    if res.returncode != 0:
        raise RuntimeError("podman build %s: %s" % (containerfile, (res.stdout + res.stderr)[-4000:]))
    took = time.monotonic() - t0
    log("built %s from %s in %.0f s" % (tag, containerfile, took))
    return took


def logs(name):
    """The container's stdout and stderr, interleaved as written."""
    res = subprocess.run(["podman", "logs", name], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=ENV, timeout=60)
    return res.stdout


def pid_status(name):
    """/proc/PID/status of a container's first process, as a dict."""
    pid = podman("inspect", name, "--format", "{{.State.Pid}}").stdout.strip()
    out = {}
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def inspect(name):
    res = podman("inspect", name)
    return json.loads(res.stdout)[0] if res.returncode == 0 else {}


def volume_path(name):
    res = podman("volume", "inspect", name, "--format", "{{.Mountpoint}}")
    return res.stdout.strip() if res.returncode == 0 else None


def port_sub(text, ports):
    """Every ':PORT' (host:port, inet:PORT@, inet:host:PORT) of the map."""
    return re.sub(r"(?<=:)(\d+)\b(?![.\d])",
                  lambda m: str(ports.get(int(m.group(1)), m.group(1))), text)
