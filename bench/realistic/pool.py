#!/usr/bin/env python3
"""Issue 20's benchmark on the realistic stack: the warm pool's `up` and `run` against cold
starts, until nginx answers through the whole chain (the app querying the seeded PostgreSQL
and reading ActiveMQ's greeting).

    python3 bench/realistic/pool.py                  # 5 runs of each figure
    python3 bench/realistic/pool.py --runs 3 --envctl /path/to/envctl

Figures, each over --runs runs (median, range):
- the critical path of the services a member leaves to start: the app's own start (from its
  container's create request until /health answers) plus nginx's (from its start request until
  the whole chain answers through it: envctl creates both containers at once, before the app
  starts), each alone on the network of a running copy of the stack, through the engine's API,
  created as envctl created its own (the same image, command, memory limit, published port);
- cold `up` (the file without a pool) and `up` adopting a ready member (`pool: {size: 1}`,
  filled before each start), until nginx answers;
- the same for `envctl run`: from its launch until its command starts (envctl's part ends
  there) and until the command (given ENVCTL_NGINX_80) gets an answer through nginx;
- 5 `up`s at once against a pool of 5 ready members, and 5 cold `up`s at once;
- what a refill costs a concurrent `up`: `envctl pool fill --watch` running, which starts a new
  member the moment the `up` adopts one, against the adopting `up` with no filler running.

It prints Markdown tables with the machine, the build and the load; it asserts nothing.
Images are built once (see common.py); everything the runs create belongs to environments
named `realbench-*` and is removed at the end, pool members included.
"""

import argparse
import http.client
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Envctl, LoadWatch, fmt, log  # noqa: E402

COLD, POOL1, POOL5 = "realbench-cold", "realbench-pool1", "realbench-pool5"

# The command `envctl run` runs: it gets nginx's address, and prints when it first answered.
PROBE = r"""
import http.client, os, re, sys, time
host, port = os.environ["ENVCTL_NGINX_80"].rsplit(":", 1)
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=2)
        c.request("GET", "/")
        r = c.getresponse()
        if r.status == 200 and re.match(r"app ok: ", r.read().decode()):
            print(time.time(), flush=True)
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.02)
sys.exit(1)
"""


# --- The Docker API, for the critical path -------------------------------------------------------

class DockerAPI:
    """Just enough of the engine's HTTP API over its unix socket (DOCKER_HOST or the default)."""

    def __init__(self, env):
        host = env.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        self.path = urlparse(host).path

    def request(self, method, path, body=None):
        connection = http.client.HTTPConnection("localhost", timeout=30)
        connection.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.sock.connect(self.path)
        headers = {"Content-Type": "application/json"}
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data!r}")
        return json.loads(data) if data else None


def http_ok(ip, port, path, pattern=None):
    try:
        connection = http.client.HTTPConnection(ip, port, timeout=2)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
        return response.status == 200 and (pattern is None or bool(pattern.match(body.strip())))
    except OSError:
        return False


def settings_of(api, container):
    """The create request of `container` as envctl made it (image, command, environment,
    exposed ports, and its host settings: memory limit, published ports, log options, the
    network), without its name, labels or network aliases, so that a copy neither counts as
    part of the environment nor answers under the service's name; and its network."""
    inspected = api.request("GET", f"/containers/{container}/json")
    config = inspected["Config"]
    network = network_of(api, container)
    body = {key: config[key] for key in ("Image", "Cmd", "Entrypoint", "Env", "ExposedPorts",
                                         "WorkingDir", "User") if config.get(key) is not None}
    body["HostConfig"] = inspected["HostConfig"]
    body["NetworkingConfig"] = {"EndpointsConfig": {network: {}}}
    return body, network


def own_start(api, body, network, port, path, pattern=None, name="realbench-critical-path"):
    """A container created with `body` (see `settings_of`) on `network`, alone: seconds from its
    create request, and from its start request, until it answers GET path on its address."""
    created_at = time.monotonic()
    created = api.request("POST", f"/containers/create?name={name}", body)
    try:
        started_at = time.monotonic()
        api.request("POST", f"/containers/{created['Id']}/start")
        ip = api.request("GET", f"/containers/{created['Id']}/json")["NetworkSettings"]["Networks"][network]["IPAddress"]
        deadline = started_at + 120
        while time.monotonic() < deadline:
            if http_ok(ip, port, path, pattern):
                now = time.monotonic()
                return now - created_at, now - started_at
            time.sleep(0.01)
        raise RuntimeError(f"{image} never answered on {ip}:{port}{path}")
    finally:
        api.request("DELETE", f"/containers/{created['Id']}?force=true")


def network_of(api, container):
    return next(iter(api.request("GET", f"/containers/{container}/json")["NetworkSettings"]["Networks"]))


# --- Starts ----------------------------------------------------------------------------------------

def timed_up(envctl, name):
    """Seconds from `envctl up` until nginx answers, the id, and whether it adopted a member."""
    started = time.monotonic()
    up = json.loads(envctl("up", name, "-o", "json"))
    common.wait_until_answers(common.proxy_port(up))
    return time.monotonic() - started, up["id"]


def adopted(envctl, id):
    for entry in json.loads(envctl("ls", "-o", "json")):
        if entry.get("id") == id:
            return entry.get("adopted_warm_seconds") is not None
    return False


def timed_run(envctl, name):
    """Seconds from `envctl run`'s launch until its command started (a shell prints the time, then
    becomes the probe), until the command got an answer through nginx, and until `run` returned
    (the environment removed)."""
    started_wall, started = time.time(), time.monotonic()
    shell = 'date +%s.%N; exec "$0" -c "$1"'
    out = envctl("run", name, "--", "sh", "-c", shell, sys.executable, PROBE)
    ended = time.monotonic() - started
    lines = out.strip().splitlines()
    return float(lines[-2]) - started_wall, float(lines[-1]) - started_wall, ended


def members(envctl, name):
    return [m for m in json.loads(envctl("pool", "ls", "-o", "json")) if m.get("environment") == name]


def ready_members(envctl, name):
    return [m for m in members(envctl, name) if m.get("state") == "ready"]


def fill(envctl, name, size):
    started = time.monotonic()
    envctl("pool", "fill", name)
    ready = len(ready_members(envctl, name))
    if ready < size:
        raise RuntimeError(f"`pool fill {name}` left {ready} of {size} members ready")
    return time.monotonic() - started


def concurrent_ups(envctl, name, count):
    """`count` `up`s launched at once: seconds until each one's nginx answered, and their ids."""
    started = time.monotonic()
    procs = [envctl.popen("up", name, "-o", "json") for _ in range(count)]
    times, ids, errors = [], [], []

    def finish(proc):
        out, err = proc.communicate()
        if proc.returncode != 0:
            errors.append(err.strip())
            return
        up = json.loads(out)
        common.wait_until_answers(common.proxy_port(up))
        times.append(time.monotonic() - started)
        ids.append(up["id"])

    threads = [threading.Thread(target=finish, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {count} concurrent `up`s failed: {errors[0]}")
    return sorted(times), ids


# --- Main ------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each figure (default 5)")
    parser.add_argument("--envctl", default=str(common.default_envctl()), help="the envctl binary")
    parser.add_argument("--rebuild", action="store_true", help="build the images again")
    parser.add_argument("--private-engine", action="store_true",
                        help="run on a dockerd of the benchmark's own instead of DOCKER_HOST's engine")
    parser.add_argument("--only", default="critical,up,run,concurrent,refill",
                        help="figures, comma-separated: critical, up, run, concurrent, refill")
    args = parser.parse_args()
    only = set(args.only.split(","))
    common.ensure_images(args.rebuild)
    engine = common.PrivateEngine() if args.private_engine else None
    watch = LoadWatch()
    results = {k: [] for k in ("app", "nginx", "cold up", "adopted up", "cold run started", "cold run",
                               "adopted run started", "adopted run",
                               "cold run total", "adopted run total", "pool5 fill", "5 adopted", "5 cold",
                               "adopted up, no filler", "adopted up, refill running", "refill")}
    with tempfile.TemporaryDirectory(prefix="envctl-realbench-") as tmp:
        envctl = None
        try:
            if engine:
                engine.start()
                engine.load([*common.IMAGES.values()])
            envctl = Envctl(args.envctl, tmp, engine)
            common.environment_file(tmp, COLD)
            common.environment_file(tmp, POOL1, pool_size=1)
            common.environment_file(tmp, POOL5, pool_size=5)
            api = DockerAPI(envctl.env)
            log(f"bench: {envctl.binary} ({envctl.build_type()} build), {args.runs} runs")
            for run in range(args.runs):
                watch.sample()
                if only & {"critical", "up"}:
                    elapsed, id = timed_up(envctl, COLD)
                    results["cold up"].append(elapsed)
                    if "critical" in only:
                        # Each a copy of envctl's own container (its memory limit, published
                        # port): the app from its create request; nginx from its start request,
                        # as envctl creates both at once before starting the app.
                        results["app"].append(own_start(api, *settings_of(api, f"app_{id}"), 8080,
                                                        "/health")[0])
                        results["nginx"].append(own_start(api, *settings_of(api, f"nginx_{id}"), 80, "/",
                                                          common.ANSWER)[1])
                    envctl("down", id)
                if "up" in only:
                    fill(envctl, POOL1, 1)
                    time.sleep(1)
                    elapsed, id = timed_up(envctl, POOL1)
                    if not adopted(envctl, id):
                        raise RuntimeError("the `up` after a fill did not adopt the member")
                    results["adopted up"].append(elapsed)
                    envctl("down", id)
                watch.sample()
                if "run" in only:
                    started, answered, total = timed_run(envctl, COLD)
                    results["cold run started"].append(started)
                    results["cold run"].append(answered)
                    results["cold run total"].append(total)
                    fill(envctl, POOL1, 1)
                    time.sleep(1)
                    started, answered, total = timed_run(envctl, POOL1)
                    if members(envctl, POOL1):
                        raise RuntimeError("`run` after a fill left the member in the pool: not adopted")
                    results["adopted run started"].append(started)
                    results["adopted run"].append(answered)
                    results["adopted run total"].append(total)
                if "concurrent" in only:
                    results["pool5 fill"].append(fill(envctl, POOL5, 5))
                    time.sleep(1)
                    watch.sample()
                    times, ids = concurrent_ups(envctl, POOL5, 5)
                    if not all(adopted(envctl, id) for id in ids):
                        raise RuntimeError("not every one of 5 `up`s against a pool of 5 adopted a member")
                    results["5 adopted"].append(times)
                    envctl("down", *ids)
                    watch.sample()
                    times, ids = concurrent_ups(envctl, COLD, 5)
                    results["5 cold"].append(times)
                    envctl("down", *ids)
                if "refill" in only:
                    refill_round(envctl, results)
                watch.sample()
                log(f"bench: run {run + 1}: " + ", ".join(
                    f"{k} {v[-1] if not isinstance(v[-1], list) else max(v[-1]):.2f}s"
                    for k, v in results.items() if v))
        finally:
            if envctl is not None:
                envctl.clean(COLD, POOL1, POOL5)
            if engine:
                engine.stop()
    report(args, envctl, watch, results)


def refill_round(envctl, results):
    """An adopting `up` with no filler running, then one while `pool fill --watch` refills."""
    fill(envctl, POOL1, 1)
    time.sleep(1)
    elapsed, id = timed_up(envctl, POOL1)
    results["adopted up, no filler"].append(elapsed)
    envctl("down", id)
    filler = envctl.popen("pool", "fill", "--watch", POOL1, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not ready_members(envctl, POOL1):
            if time.monotonic() > deadline:
                raise RuntimeError("`pool fill --watch` never filled the pool")
            time.sleep(0.2)
        time.sleep(1)
        first = ready_members(envctl, POOL1)[0]["id"]
        started = time.monotonic()
        elapsed, id = timed_up(envctl, POOL1)
        if not adopted(envctl, id):
            raise RuntimeError("the `up` did not adopt the member")
        results["adopted up, refill running"].append(elapsed)
        # The filler's new member: from the adopting `up`'s start until it is ready.
        while not [m for m in ready_members(envctl, POOL1) if m["id"] != first]:
            if time.monotonic() > deadline:
                raise RuntimeError("`pool fill --watch` never refilled the pool")
            time.sleep(0.1)
        results["refill"].append(time.monotonic() - started)
        envctl("down", id)
    finally:
        filler.send_signal(signal.SIGTERM)
        try:
            filler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            filler.kill()
            filler.wait()


def report(args, envctl, watch, r):
    print(common.header("Realistic stack, warm pool (issue 20)", envctl, watch))
    print()
    critical = None
    if r["app"]:
        critical = statistics.median(r["app"]) + statistics.median(r["nginx"])
    print("| measurement | result | vs the non-pooled critical path |")
    print("| --- | --- | --- |")

    def ratio(samples):
        return f"{statistics.median(samples) / critical:.2f} ×" if critical and samples else ""

    if critical:
        print(f"| app's own start (its create request until /health answers) | {fmt(r['app'])} | |")
        print(f"| nginx's own start (its start request until the chain answers) | {fmt(r['nginx'])} | |")
        print(f"| critical path of the non-pooled services (app + nginx) | {critical:.2f} s | 1.00 × |")
    for key, label in (("cold up", "cold `up` until nginx answers"),
                       ("adopted up", "`up` adopting a ready member, until nginx answers"),
                       ("cold run started", "cold `run` until its command starts"),
                       ("cold run", "cold `run` until its command gets an answer"),
                       ("adopted run started", "`run` adopting a ready member, until its command starts"),
                       ("adopted run", "`run` adopting a ready member, until its command gets an answer"),
                       ("cold run total", "cold `run`, whole (command + removal)"),
                       ("adopted run total", "adopting `run`, whole (command + removal)")):
        if r[key]:
            print(f"| {label} | {fmt(r[key])} | {ratio(r[key]) if 'total' not in key else ''} |")
    if r["5 adopted"]:
        last = [max(t) for t in r["5 adopted"]]
        each = [x for t in r["5 adopted"] for x in t]
        cold_last = [max(t) for t in r["5 cold"]]
        cold_each = [x for t in r["5 cold"] for x in t]
        print(f"| 5 `up`s at once, pool of 5: each until its nginx answers | {fmt(each)} | {ratio(each)} |")
        print(f"| 5 `up`s at once, pool of 5: the last | {fmt(last)} | {ratio(last)} |")
        print(f"| 5 cold `up`s at once: each | {fmt(cold_each)} | {ratio(cold_each)} |")
        print(f"| 5 cold `up`s at once: the last | {fmt(cold_last)} | {ratio(cold_last)} |")
        print(f"| `pool fill` of 5 members at once (not timed for a tester) | {fmt(r['pool5 fill'])} | |")
    if r["adopted up, refill running"]:
        no, yes = r["adopted up, no filler"], r["adopted up, refill running"]
        print(f"| `up` adopting, no filler running | {fmt(no)} | {ratio(no)} |")
        print(f"| `up` adopting while `pool fill --watch` refills | {fmt(yes)} | {ratio(yes)} |")
        print(f"| the refill: from that `up`'s start until the new member is ready | {fmt(r['refill'])} | |")
        print(f"| what the refill costs the `up` (difference of medians) | "
              f"{statistics.median(yes) - statistics.median(no):+.2f} s | |")


if __name__ == "__main__":
    sys.exit(main())
