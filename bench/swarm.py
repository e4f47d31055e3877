#!/usr/bin/env python3
"""What the test swarm costs and how fast Swarm starts and removes tasks on it: the figures
behind docs/backends.md §6.2.

Run as root from anywhere (needs what tests/swarm/swarm.sh needs, plus Rust for the stand-in):

    python3 bench/swarm.py             # 5 runs of each figure (about 3 minutes)
    python3 bench/swarm.py --runs 3

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
import statistics
import subprocess
import sys
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

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
    print("| measurement | result |\n| --- | --- |")
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
