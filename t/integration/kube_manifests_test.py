#!/usr/bin/python3
"""contrib/kubernetes/mailserver.yaml, read as kubelet reads it (no cluster
here; container_test.py plays the pod with podman, which runs no probe):
the mail pod's sidecars share its Ready state, and one unready container
takes the whole pod off the Service, port 25 too. helper-121: a Redis
restart (policyd-ratelimit's /readyz 503) or a missing webhook secret
(lmtp-webhook-spool's) left the Service without endpoints, so every
inbound connection was refused. Those two have liveness probes only;
the shim and milter-dkim, whose readiness is the pod's own, keep theirs;
no probe touches a mail port (a kubelet sends no PROXY header)."""

import os
import sys

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxtest import src_path, tap  # noqa: E402

METRICS = {"proxyv2-shim": 9103, "milter-dkim": 9102, "policyd-ratelimit": 9101,
           "lmtp-webhook-spool": 9104}

with open(src_path("contrib", "kubernetes", "mailserver.yaml")) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
pod = [d for d in docs if d.get("kind") == "Deployment"
       and d["metadata"]["name"] == "mailserver"]
tap.is_(len(pod), 1, "one mailserver Deployment")
containers = {c["name"]: c for c in pod[0]["spec"]["template"]["spec"]["containers"]}
for name, port in sorted(METRICS.items()):
    c = containers.get(name, {})
    tap.is_((c.get("livenessProbe") or {}).get("httpGet"), {"path": "/healthz", "port": port},
            "%s: liveness GET /healthz on its metrics port %d" % (name, port))
for name in ("policyd-ratelimit", "lmtp-webhook-spool"):
    tap.ok("readinessProbe" not in containers.get(name, {"readinessProbe": 1}),
           "%s: no readiness probe (a shared Redis or the runner's secret must not take the "
           "pod off the Service)" % name)
for name in ("proxyv2-shim", "milter-dkim"):
    tap.is_((containers[name].get("readinessProbe") or {}).get("httpGet"),
            {"path": "/readyz", "port": METRICS[name]},
            "%s: readiness GET /readyz on its metrics port" % name)
# helper-121: the whole Secret was mounted in every sidecar, the shim's
# (internet-facing, reads none) and the runner's (reads no DKIM key) too
volumes = {v["name"]: v for v in pod[0]["spec"]["template"]["spec"]["volumes"]}
wants = {"proxyv2-shim": set(), "milter-dkim": {"rsa2026.private", "ed2026.private"},
         "policyd-ratelimit": {"redis-password"}, "lmtp-webhook-spool": {"webhook.secret"}}
for name, want in sorted(wants.items()):
    got = set()
    for m in containers[name].get("volumeMounts", []):
        secret = volumes[m["name"]].get("secret")
        if secret is None:
            continue
        items = secret.get("items")
        got |= {i["path"] for i in items} if items else {"(every key)"}
    tap.is_(got, want, "%s mounts the Secret's keys it reads, no other" % name)
probed = [(n, p.get("tcpSocket") or p.get("httpGet", {}).get("port"))
          for n, c in containers.items() for k, p in c.items() if k.endswith("Probe")]
tap.ok(all(not isinstance(port, dict) and port in METRICS.values() for _, port in probed),
       "no probe on a mail port", diag=repr(probed))
sys.exit(tap.done())
