#!/usr/bin/env python3
"""What the test swarm costs and how fast Swarm starts and removes tasks on it: the figures
behind docs/backends.md §6.2.

Run as root from anywhere (needs what tests/swarm/swarm.sh needs, plus Rust for the stand-in):

    python3 bench/swarm.py                   # 5 runs of each figure (about 6 minutes)
    python3 bench/swarm.py --runs 3
    python3 bench/swarm.py --only serving    # envctl up-to-serving only: swarm against Docker

Up to serving (`--only serving`, also part of the default run): `envctl up` of the demo
environment (its start delays: oracle-xe 3 s, activemq 2 s, accounting 2 s, proxy 1 s) until an
HTTP request through the proxy's published port returns the whole chain, with `--backend swarm`
on a fresh 3-node test swarm (images from its registry) against `--backend docker` on this
machine's engine (images built locally); the two alternate within each round, and each
environment is removed with `envctl down` before the next.

Figures, each the median and range over the runs:
  - the swarm's set-up (swarm.sh up: 3 nodes, registry) and tear-down (swarm.sh down);
  - service create -> task running, by the swarm's own timestamps (task CreatedAt to the
    running Status.Timestamp), on the manager and on a worker;
  - service create -> its host-mode published port answering at the node's address;
  - service create -> answering through a network alias of a service that runs on another
    node (created once that one runs, as envctl orders them);
  - service delete -> its container gone from the node;
  - whether `network rm` right after `service rm` is refused;
  - create -> running on a network re-created at once under the name just removed, against
    a fresh name.
It asserts nothing and never fails on a slow result; everything it makes is named `bsw*` and
removed at the end.
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWARM = ROOT / "tests" / "swarm" / "swarm.sh"


def log(message):
    print(message, file=sys.stderr, flush=True)


def sh(*args, check=True):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed: {result.stderr}")
    return result.stdout.strip()


def timestamp(text):
    # Docker's nanosecond RFC 3339 times, to microseconds.
    text = text.replace("Z", "+00:00")
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(text).timestamp()


class Swarm:
    def __init__(self, env_file):
        env = dict(line.split("=", 1) for line in Path(env_file).read_text().splitlines())
        env = {k: v.strip('"') for k, v in env.items()}
        self.name = env["ENVCTL_SWARM_NAME"]
        self.manager = env["ENVCTL_SWARM_MANAGER"]
        self.hosts = env["ENVCTL_SWARM_NODE_HOSTS"].split()
        self.registry = env["ENVCTL_SWARM_REGISTRY"]
        self.image = f"{self.registry}/envctl-demo/standin:bench"

    def docker(self, *args, host=None, check=True):
        return sh("docker", "-H", host or self.manager, *args, check=check)

    def push_image(self):
        sh("bash", ROOT / "demo" / "build-standin.sh")
        subprocess.run(["docker", "-H", self.manager, "build", "-q", "-t", self.image,
                        str(ROOT / "demo" / "image")], check=True, capture_output=True,
                       env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
        self.docker("push", self.image)

    def service(self, name, *args, network=None, alias=None, port=None, role=None):
        flags = ["--detach", "--name", name, "--replicas", "1", "--restart-condition", "none",
                 "--endpoint-mode", "dnsrr"]
        if network:
            flags += ["--network", f"name={network}" + (f",alias={alias}" if alias else "")]
        if port:
            flags += ["--publish", f"mode=host,target={port}"]
        if role:
            flags += ["--constraint", f"node.role=={role}"]
        return self.docker("service", "create", *flags, self.image, *args)

    def task(self, service):
        ids = self.docker("service", "ps", "-q", "--no-trunc", service).split()
        return json.loads(self.docker("inspect", ids[0]))[0] if ids else None

    def wait_running(self, service, limit=60):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            task = self.task(service)
            if task and task["Status"]["State"] == "running":
                return task
            time.sleep(0.05)
        raise RuntimeError(f"{service} did not run within {limit}s")

    def endpoint(self, service, target):
        task = self.wait_running(service)
        node = json.loads(self.docker("node", "inspect", task["NodeID"]))[0]
        ports = {p["PublishedPort"] for p in task["Status"]["PortStatus"]["Ports"]
                 if p["TargetPort"] == target}
        return node["Status"]["Addr"], ports.pop()

    def remove(self, *services):
        if services:
            self.docker("service", "rm", *services, check=False)


def answers(addr, port, path="/"):
    try:
        conn = http.client.HTTPConnection(addr, port, timeout=2)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status == 200
    except OSError:
        return False


def wait_answer(addr, port, path="/", limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if answers(addr, port, path):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{addr}:{port}{path} did not answer within {limit}s")


def summary(samples, unit="s"):
    if not samples:
        return "n/a"
    med = statistics.median(samples)
    return f"{med:.2f} {unit} ({min(samples):.2f}-{max(samples):.2f}, n={len(samples)})"


def setup_cost(runs):
    ups, downs = [], []
    for i in range(runs):
        name = f"bsw{i}"
        start = time.monotonic()
        sh("bash", SWARM, "up", name)
        ups.append(time.monotonic() - start)
        start = time.monotonic()
        sh("bash", SWARM, "down", name)
        downs.append(time.monotonic() - start)
    return ups, downs


def task_latency(swarm, network, runs):
    figures = {"running (manager)": [], "running (worker)": [], "port answering": [],
               "alias answering": [], "delete to container gone": []}
    for i in range(runs):
        for role in ("manager", "worker"):
            name = f"bsw-run-{role}-{i}"
            swarm.service(name, "sleep", network=network, role=role)
            task = swarm.wait_running(name)
            figures[f"running ({role})"].append(
                timestamp(task["Status"]["Timestamp"]) - timestamp(task["CreatedAt"]))
            swarm.remove(name)

        name = f"bsw-port-{i}"
        start = time.monotonic()
        swarm.service(name, "serve", "--port", "8080", network=network, port=8080, role="worker")
        addr, port = swarm.endpoint(name, 8080)
        wait_answer(addr, port, "/health")
        figures["port answering"].append(time.monotonic() - start)
        swarm.remove(name)

        # As envctl starts them: the dependent once its dependency runs.
        db, web = f"bsw-db-{i}", f"bsw-web-{i}"
        swarm.service(db, "serve", "--port", "1521", network=network, alias="oracle",
                      role="manager")
        swarm.wait_running(db)
        start = time.monotonic()
        swarm.service(web, "serve", "--port", "8080", "--requires", "oracle:1521",
                      network=network, port=8080, role="worker")
        addr, port = swarm.endpoint(web, 8080)
        wait_answer(addr, port, "/")
        figures["alias answering"].append(time.monotonic() - start)

        # Removal: how long the task's container outlives `service rm`.
        task = swarm.task(web)
        node_host = node_of(swarm, task)
        container = task["Status"]["ContainerStatus"]["ContainerID"]
        start = time.monotonic()
        swarm.remove(db, web)
        while swarm.docker("ps", "-aq", "--filter", f"id={container}", host=node_host):
            time.sleep(0.02)
        figures["delete to container gone"].append(time.monotonic() - start)
    return figures


def node_of(swarm, task):
    node = json.loads(swarm.docker("node", "inspect", task["NodeID"]))[0]
    addr = node["Status"]["Addr"]
    return swarm.hosts[int(addr.rsplit(".", 1)[1]) - 11]


def network_reuse(swarm, runs):
    fresh, reused, refused = [], [], 0
    for i in range(runs):
        for label, name in (("fresh", f"bsw-net-fresh-{i}"), ("reused", "bsw-net-reused")):
            swarm.docker("network", "create", "-d", "overlay", "--attachable", name)
            service = f"bsw-reuse-{label}-{i}"
            swarm.service(service, "sleep", network=name, role="worker")
            task = swarm.wait_running(service)
            took = timestamp(task["Status"]["Timestamp"]) - timestamp(task["CreatedAt"])
            (fresh if label == "fresh" else reused).append(took)
            swarm.remove(service)
            # Right after `service rm`: refused while the task's container still exists.
            if not try_rm_network(swarm, name):
                refused += 1
                deadline = time.monotonic() + 60
                while not try_rm_network(swarm, name) and time.monotonic() < deadline:
                    time.sleep(0.1)
    # The first run of the reused name is a fresh name too.
    return fresh, reused[1:], refused


def try_rm_network(swarm, name):
    return subprocess.run(["docker", "-H", swarm.manager, "network", "rm", name],
                          capture_output=True).returncode == 0


ENVCTL = ROOT / "target" / "release" / "envctl"
CHAIN = "proxy -> accounting ok\naccounting -> oracle:1521 ok\naccounting -> activemq:61616 ok\n"


def demo_file(directory, name, images, activemq_ready, publish_accounting=False):
    """The demo environment as environments/demo.yaml has it, with `images` and without
    `build:` (a swarm of several nodes pulls from a registry)."""
    text = (ROOT / "environments" / "demo.yaml").read_text()
    lines = [line for line in text.splitlines() if "build:" not in line]
    text = "\n".join(lines) + "\n"
    text = text.replace("name: demo", f"name: {name}")
    for service in ("oracle-xe", "activemq", "accounting", "proxy"):
        text = text.replace(f"image: envctl-demo/{service}\n", f"image: {images(service)}\n")
    text = text.replace("    ready:\n      tcp: 61616\n", activemq_ready)
    if publish_accounting:
        head, tail = text.split("  proxy:", 1)
        head = head.replace("    ready:\n      http: 8080/health", "    ports: [8080]\n    ready:\n      http: 8080/health")
        text = head + "  proxy:" + tail
    path = Path(directory) / f"{name}.yaml"
    path.write_text(text)
    return path


def chain_at(host, port):
    try:
        connection = http.client.HTTPConnection(host, port, timeout=2)
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status == 200 and response.read().decode() == CHAIN
    except OSError:
        return False


def up_to_serving(backend_env, envdir, environment):
    """Seconds from `envctl up` until the chain answers through the proxy; then `down`."""
    started = time.monotonic()
    env = dict(os.environ, **backend_env)
    out = subprocess.run([str(ENVCTL), "up", environment, "--envdir", str(envdir), "-o", "json",
                          "--timeout", "300s"], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"envctl up failed: {out.stderr}")
    up = json.loads(out.stdout)
    proxy = next(s for s in up["services"] if s["service"] == "proxy")["ports"][0]
    deadline = time.monotonic() + 120
    while not chain_at(proxy["host"], proxy["host_port"]):
        if time.monotonic() > deadline:
            raise RuntimeError("the proxy never answered through the chain")
        time.sleep(0.02)
    took = time.monotonic() - started
    subprocess.run([str(ENVCTL), "down", up["id"]], capture_output=True, env=env, check=True)
    return took


def serving(runs):
    log("up to serving: building envctl, the stand-in and the demo images ...")
    sh("cargo", "build", "--release", "--quiet", "--bin", "envctl")
    sh("bash", ROOT / "demo" / "build-standin.sh")
    sh(ENVCTL, "build", "demo", "--envdir", ROOT / "environments")
    name = "bswsrv"
    env_file = sh("bash", SWARM, "up", name).splitlines()[-1]
    swarm = Swarm(env_file)
    envdir = Path(tempfile.mkdtemp(prefix="envctl-bench-swarm-"))
    try:
        subprocess.run([str(ENVCTL), "build", "demo", "--envdir", str(ROOT / "environments")],
                       check=True, capture_output=True, env=dict(os.environ, DOCKER_HOST=swarm.manager))
        for service in ("oracle-xe", "activemq", "accounting", "proxy"):
            target = f"{swarm.registry}/envctl-demo/{service}:latest"
            swarm.docker("tag", f"envctl-demo/{service}:latest", target)
            swarm.docker("push", target)
        demo_file(envdir, "bench-docker", lambda s: f"envctl-demo/{s}", "    ready:\n      tcp: 61616\n")
        # On the swarm a probed port is published (accounting), or probed by the swarm itself as
        # the service's health check (activemq).
        demo_file(envdir, "bench-swarm", lambda s: f"{swarm.registry}/envctl-demo/{s}",
                  "    ready:\n      exec: [/standin, probe, tcp, \"61616\"]\n", publish_accounting=True)
        docker, on_swarm = [], []
        for i in range(runs):
            log(f"up to serving, round {i + 1} of {runs} ...")
            docker.append(up_to_serving({"ENVCTL_BACKEND": "docker"}, envdir, "bench-docker"))
            on_swarm.append(up_to_serving({"ENVCTL_BACKEND": "swarm", "DOCKER_HOST": swarm.manager},
                                          envdir, "bench-swarm"))
    finally:
        sh("bash", SWARM, "down", name, check=False)
        shutil.rmtree(envdir, ignore_errors=True)
    ratio = statistics.median(on_swarm) / statistics.median(docker)
    return [("`envctl up` demo until the chain answers, single-host Docker", summary(docker)),
            ("`envctl up` demo until the chain answers, 3-node swarm",
             f"{summary(on_swarm)} (swarm / Docker = {ratio:.2f})")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=["serving"], help="measure only envctl up-to-serving")
    args = parser.parse_args()

    if args.only == "serving":
        rows = serving(args.runs)
        print("| measurement | result |\n| --- | --- |")
        for label, value in rows:
            print(f"| {label} | {value} |")
        return

    log("swarm set-up and tear-down ...")
    ups, downs = setup_cost(args.runs)
    name = "bswm"
    env_file = sh("bash", SWARM, "up", name).splitlines()[-1]
    swarm = Swarm(env_file)
    try:
        swarm.push_image()
        network = "bsw-net"
        swarm.docker("network", "create", "-d", "overlay", "--attachable", network)
        log("task latencies ...")
        figures = task_latency(swarm, network, args.runs)
        log("network re-created under the same name ...")
        fresh, reused, refused = network_reuse(swarm, args.runs)
        swarm.docker("network", "rm", network, check=False)
    finally:
        sh("bash", SWARM, "down", name, check=False)

    rows = [("`swarm.sh up` (3 nodes, registry)", summary(ups)),
            ("`swarm.sh down`", summary(downs))]
    rows += [(f"service create -> {k}" if "delete" not in k else f"service {k}", summary(v))
             for k, v in figures.items()]
    rows += [("create -> running, fresh network name", summary(fresh)),
             ("create -> running, network re-created under its old name", summary(reused)),
             ("`network rm` refused right after `service rm`", f"{refused} of {2 * args.runs}")]
    rows += serving(args.runs)
    print("| measurement | result |\n| --- | --- |")
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
