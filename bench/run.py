#!/usr/bin/env python3
"""envctl's benchmarks: envctl against docker-compose, the seed's `docker run --link` script and
the critical-path floor, on the demo environment; plus concurrency, `ls`, a reaper pass and
memory at scale.

Run from anywhere (needs Docker, Debian's docker-compose and Rust):

    python3 bench/run.py            # every figure, 5 runs each (about 20 minutes)
    python3 bench/run.py --runs 3 --skip-default-interval
    python3 bench/run.py --only update,down   # `envctl update` and `envctl down` alone

It prints figures and a Markdown table; it asserts nothing and never fails on a slow result.
Everything it creates is named `bench*` and removed at the end.
"""

import argparse
import http.client
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVCTL = ROOT / "target" / "release" / "envctl"
IMAGE = "envctl-demo/oracle-xe:latest"
CHAIN = "proxy -> accounting ok\naccounting -> oracle:1521 ok\naccounting -> activemq:61616 ok\n"

# The workload: the demo environment's services with their start delays.
SERVICES = {
    "oracle-xe": {"port": 1521, "delay": "3s", "requires": [], "forward": None},
    "activemq": {"port": 61616, "delay": "2s", "requires": [], "forward": None},
    "accounting": {"port": 8080, "delay": "2s", "requires": ["oracle:1521", "activemq:61616"], "forward": None},
    "proxy": {"port": 8080, "delay": "1s", "requires": ["accounting:8080"], "forward": "accounting:8080"},
}
LINKS = {"accounting": {"oracle-xe": "oracle", "activemq": "activemq"},
         "proxy": {"oracle-xe": "oracle", "accounting": "accounting", "activemq": "activemq"}}
CRITICAL_PATH_SECONDS = 3 + 2 + 1  # oracle-xe -> accounting -> proxy
HOPS = 3


def log(message):
    print(message, file=sys.stderr, flush=True)


def sh(*args, check=True, capture=True, env=None):
    result = subprocess.run(args, capture_output=capture, text=True, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed: {result.stderr}")
    return result.stdout if capture else ""


def command(service, delay=None):
    spec = SERVICES[service]
    args = ["serve", "--name", service, "--port", str(spec["port"]),
            "--delay", delay if delay is not None else spec["delay"]]
    for dep in spec["requires"]:
        args += ["--requires", dep]
    if spec["forward"]:
        args += ["--forward", spec["forward"]]
    return args


# --- HTTP through the proxy ---------------------------------------------------------------

def chain_answers(port):
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status == 200 and response.read().decode() == CHAIN
    except OSError:
        return False


def wait_for_chain(port, limit=600):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if chain_answers(port):
            return
        time.sleep(0.02)
    raise RuntimeError(f"the proxy on port {port} never answered through the chain")


# --- The Docker API, for the floor measurement ---------------------------------------------

class DockerAPI:
    """Just enough of the engine's HTTP API over its unix socket."""

    def request(self, method, path, body=None):
        connection = http.client.HTTPConnection("localhost")
        connection.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.sock.connect("/var/run/docker.sock")
        headers = {"Content-Type": "application/json"}
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data!r}")
        return json.loads(data) if data else None


def container_start_latency(api):
    """From the start request until a fresh container's port accepts a connection."""
    created = api.request("POST", "/containers/create?name=bench-latency",
                          {"Image": IMAGE, "Cmd": ["serve", "--port", "9000"]})
    try:
        started = time.monotonic()
        api.request("POST", f"/containers/{created['Id']}/start")
        ip = api.request("GET", f"/containers/{created['Id']}/json")["NetworkSettings"]["IPAddress"]
        while True:
            try:
                socket.create_connection((ip, 9000), timeout=1).close()
                return time.monotonic() - started
            except OSError:
                time.sleep(0.002)
    finally:
        api.request("DELETE", f"/containers/{created['Id']}?force=true")


# --- The contenders -------------------------------------------------------------------------

def envctl_up(envdir, environment, name):
    """Seconds until the chain answers, and the environment's proxy port."""
    started = time.monotonic()
    out = sh(ENVCTL, "up", environment, "--envdir", envdir, "--name", name, "-o", "json")
    up = json.loads(out)
    proxy = next(s for s in up["services"] if s["service"] == "proxy")
    port = proxy["ports"][0]["host_port"]
    wait_for_chain(port)
    return time.monotonic() - started


def envctl_down(name):
    started = time.monotonic()
    sh(ENVCTL, "down", name)
    return time.monotonic() - started


def compose_file(directory, interval, stubborn=False):
    lines = ['version: "2.4"', "services:"]
    for service, spec in SERVICES.items():
        # `up -d --no-deps accounting` switches accounting to the tag in ACCOUNTING_TAG.
        image = IMAGE.replace(":latest", ":${ACCOUNTING_TAG:-latest}") if service == "accounting" else IMAGE
        lines += [f"  {service}:", f"    image: {image}", f"    command: {json.dumps(command(service))}"]
        if stubborn:
            lines += ["    environment:", '      STANDIN_IGNORE_SIGTERM: "1"']
        if service == "proxy":
            lines += ['    ports: ["8080"]']
        links = LINKS.get(service, {})
        if links:
            lines += ["    links:"] + [f"      - {s}:{alias}" for s, alias in links.items()]
            lines += ["    depends_on:"] + [f"      {s}:\n        condition: service_healthy" for s in links]
        probe = ["CMD", "/standin", "probe", "tcp", str(spec["port"])]
        lines += ["    healthcheck:", f"      test: {json.dumps(probe)}"]
        if interval:
            # Enough retries that a slow start is not declared unhealthy at that pace.
            lines += [f"      interval: {interval}", "      retries: 240"]
    path = Path(directory) / f"compose-{interval or 'default'}{'-stubborn' if stubborn else ''}.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def compose_up(path, project):
    started = time.monotonic()
    sh("docker-compose", "-p", project, "-f", path, "up", "-d", "--quiet-pull")
    port = int(sh("docker-compose", "-p", project, "-f", path, "port", "proxy", "8080").rsplit(":", 1)[1])
    wait_for_chain(port)
    return time.monotonic() - started


def compose_down(path, project):
    sh("docker-compose", "-p", project, "-f", path, "down", "-t", "1", check=False)


def seed_script(directory):
    """The seed's launch script, its containers running the stand-in."""
    lines = ["#!/bin/bash", "set -e", "NAME_POSTFIX=$1"]
    names = {s: f"bench-{s}_$NAME_POSTFIX" for s in SERVICES}
    for service in SERVICES:
        links = " ".join(f"--link {names[s]}:{alias}" for s, alias in LINKS.get(service, {}).items())
        publish = "-p 8080" if service == "proxy" else ""
        cmd = " ".join(command(service))
        lines.append(f"docker run -d --name {names[service]} {publish} {links} {IMAGE} {cmd} >/dev/null")
    path = Path(directory) / "launch-test-environment"
    path.write_text("\n".join(lines) + "\n")
    return path


def seed_up(script, postfix):
    started = time.monotonic()
    sh("bash", script, postfix)
    port = int(sh("docker", "port", f"bench-proxy_{postfix}", "8080").splitlines()[0].rsplit(":", 1)[1])
    wait_for_chain(port)
    return time.monotonic() - started


def seed_down(postfix):
    names = [f"bench-{s}_{postfix}" for s in SERVICES]
    sh("docker", "rm", "-f", *names, check=False)


def peak_rss_kib(args):
    """Peak resident memory of one command, from a fresh process so no other child counts."""
    probe = ("import resource,subprocess,sys;"
             "subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    return int(sh(sys.executable, "-c", probe, *map(str, args)))


# --- update and down -------------------------------------------------------------------------

ACCOUNTING = "envctl-demo/accounting"
NEXT_TAG = "bench-next"


def proxy_port(name):
    return int(sh("docker", "port", f"proxy_{name}", "8080").splitlines()[0].rsplit(":", 1)[1])


def envctl_update(envdir, name):
    """Seconds from `envctl update NAME accounting@bench-next` until the chain answers again."""
    started = time.monotonic()
    sh(ENVCTL, "update", name, f"accounting@{NEXT_TAG}", "--envdir", envdir)
    wait_for_chain(proxy_port(name))
    return time.monotonic() - started


def envctl_down_up(envdir, name):
    """Seconds for what a tester did before `update`: `down`, then `up` again."""
    started = time.monotonic()
    sh(ENVCTL, "down", name)
    envctl_up(envdir, "bench", name)
    return time.monotonic() - started


def compose_switch(path, project):
    """Seconds from `docker-compose up -d --no-deps accounting` at the next tag until the chain
    answers again."""
    env = dict(os.environ, ACCOUNTING_TAG=NEXT_TAG)
    started = time.monotonic()
    sh("docker-compose", "-p", project, "-f", path, "up", "-d", "--no-deps", "accounting", env=env)
    port = int(sh("docker-compose", "-p", project, "-f", path, "port", "proxy", "8080").rsplit(":", 1)[1])
    wait_for_chain(port)
    return time.monotonic() - started


def stubborn(text):
    """The demo file with every service ignoring SIGTERM, as a shell running as PID 1 does."""
    return text.replace("    command:", '    env: {STANDIN_IGNORE_SIGTERM: "1"}\n    command:')


def update_and_down(args, work, envdir, compose_fast):
    """The figures of `envctl update` and of `down` on SIGTERM-ignoring images."""
    api = DockerAPI()
    sh("docker", "tag", f"{ACCOUNTING}:latest", f"{ACCOUNTING}:{NEXT_TAG}")
    sh("docker", "tag", IMAGE, f"envctl-demo/oracle-xe:{NEXT_TAG}")
    results = {"update": [], "down+up": [], "compose switch": [], "latency": [],
               "down stubborn": [], "down grace": [], "compose down stubborn": []}
    compose_stubborn = compose_file(work, "250ms", stubborn=True)
    fast = (envdir / "bench-fast.yaml").read_text()
    (envdir / "bench-stubborn.yaml").write_text(stubborn(fast).replace("name: bench-fast", "name: bench-stubborn"))
    try:
        for round_ in range(args.runs):
            results["latency"] += [container_start_latency(api) for _ in range(3)]
            name = f"bench-u{round_}"
            envctl_up(envdir, "bench", name)
            results["update"].append(envctl_update(envdir, name))
            results["down+up"].append(envctl_down_up(envdir, name))
            sh(ENVCTL, "down", name)
            project = f"benchu{round_}"
            compose_up(compose_fast, project)
            results["compose switch"].append(compose_switch(compose_fast, project))
            compose_down(compose_fast, project)
            for key, flags in (("down stubborn", []), ("down grace", ["--grace", "1s"])):
                sh(ENVCTL, "up", "bench-stubborn", "--envdir", envdir, "--name", name)
                started = time.monotonic()
                sh(ENVCTL, "down", name, *flags)
                results[key].append(time.monotonic() - started)
            compose_up(compose_stubborn, project)
            started = time.monotonic()
            compose_down(compose_stubborn, project)
            results["compose down stubborn"].append(time.monotonic() - started)
            log(f"bench: update/down round {round_ + 1}: " + ", ".join(
                f"{k} {v[-1]:.2f}s" for k, v in results.items() if v))
    finally:
        sh("docker", "rmi", f"{ACCOUNTING}:{NEXT_TAG}", f"envctl-demo/oracle-xe:{NEXT_TAG}", check=False)
    s = {k: summary(v) for k, v in results.items()}
    # What the replaced service takes on its own: its start delay and one engine start.
    own = float(SERVICES["accounting"]["delay"].rstrip("s")) + s["latency"]["median"]
    update = s["update"]["median"]
    return [
        f"| `envctl update ID accounting@REF`, demo, until the chain answers again | {fmt(s['update'])} "
        f"(update / accounting's own start = {update / own:.2f}) | at most 1.10 × accounting's own start |",
        f"| accounting's own start: 2 s delay + {s['latency']['median'] * 1000:.0f} ms engine start latency "
        f"| {own:.2f} s | |",
        f"| `envctl down` + `envctl up`, same switch | {fmt(s['down+up'])} (update / it = {update / s['down+up']['median']:.2f}) | |",
        f"| `docker-compose up -d --no-deps accounting`, same switch | {fmt(s['compose switch'])} "
        f"(update / it = {update / s['compose switch']['median']:.2f}) | |",
        f"| `envctl down`, demo with SIGTERM-ignoring images | {fmt(s['down stubborn'])} | under 1.5 s |",
        f"| `envctl down --grace 1s`, same | {fmt(s['down grace'])} | |",
        f"| `docker-compose down -t 1`, same | {fmt(s['compose down stubborn'])} | |",
    ]


# --- Figures ---------------------------------------------------------------------------------

def summary(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def fmt(s, unit="s", scale=1.0, digits=2):
    return (f"{s['median'] * scale:.{digits}f} {unit} "
            f"({s['min'] * scale:.{digits}f}–{s['max'] * scale:.{digits}f}, n={s['n']})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per contender (default 5)")
    parser.add_argument("--scale", type=int, default=50, help="environments for ls/reap (default 50)")
    parser.add_argument("--skip-default-interval", action="store_true",
                        help="skip compose at Docker's default 30 s healthcheck interval (slow)")
    parser.add_argument("--only", default="start,update,down",
                        help="figures to measure, comma-separated: start (up, compose, seed, "
                             "concurrency, ls, reaper, memory), update, down (default: all)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not shutil.which("docker-compose"):
        sys.exit("bench: needs docker-compose (Debian: apt-get install docker-compose)")

    log("bench: building envctl, the stand-in and the demo images")
    sh("cargo", "build", "--release", "--quiet", "--bin", "envctl", capture=False)
    sh("bash", ROOT / "demo" / "build-standin.sh")
    sh(ENVCTL, "build", "demo", "--envdir", ROOT / "environments")
    work = Path(tempfile.mkdtemp(prefix="envctl-bench-"))
    envdir = work / "environments"
    envdir.mkdir()
    demo = (ROOT / "environments" / "demo.yaml").read_text()
    (envdir / "bench.yaml").write_text(demo.replace("name: demo", "name: bench")
                                       .replace("../demo/image", str(ROOT / "demo" / "image")))
    fast = demo.replace("name: demo", "name: bench-fast").replace("../demo/image", str(ROOT / "demo" / "image"))
    for delay in ("3s", "2s", "1s"):
        fast = fast.replace(f"--delay, {delay}", "--delay, 0s").replace(f"- {delay}\n", "- 0s\n")
    (envdir / "bench-fast.yaml").write_text(fast)
    compose_fast = compose_file(work, "250ms")
    compose_default = compose_file(work, None)
    seed = seed_script(work)
    machine = (f"Machine: {os.cpu_count()} cores, Docker "
               + sh("docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})").strip()
               + ", docker-compose " + sh("docker-compose", "version", "--short").strip() + ".\n")
    rows = update_and_down(args, work, envdir, compose_fast) if only & {"update", "down"} else []
    if "start" not in only:
        shutil.rmtree(work, ignore_errors=True)
        print(machine)
        print("| measurement | result | target |")
        print("| --- | --- | --- |")
        for row in rows:
            print(row)
        return
    api = DockerAPI()
    results = {"envctl": [], "compose 250ms": [], "compose default": [], "seed script": [],
               "start latency": [], "down": []}

    log(f"bench: {args.runs} rounds, tools alternating")
    for round_ in range(args.runs):
        results["start latency"] += [container_start_latency(api) for _ in range(3)]
        name = f"bench-{round_}"
        results["envctl"].append(envctl_up(envdir, "bench", name))
        results["down"].append(envctl_down(name))
        project = f"bench{round_}"
        results["compose 250ms"].append(compose_up(compose_fast, project))
        compose_down(compose_fast, project)
        results["seed script"].append(seed_up(seed, str(round_)))
        seed_down(str(round_))
        if not args.skip_default_interval:
            results["compose default"].append(compose_up(compose_default, project))
            compose_down(compose_default, project)
        log(f"bench: round {round_ + 1}: " + ", ".join(
            f"{k} {v[-1]:.2f}s" for k, v in results.items() if v))

    latency = statistics.median(results["start latency"])
    floor = CRITICAL_PATH_SECONDS + HOPS * latency

    log("bench: 10 environments at once")
    concurrent = {"envctl": [], "compose 250ms": []}
    for round_ in range(max(1, args.runs // 2)):
        started = time.monotonic()
        ups = [subprocess.Popen([ENVCTL, "up", "bench", "--envdir", envdir, "--name", f"bench-c{round_}-{i}", "-o", "json"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for i in range(10)]
        for up in ups:
            out, _ = up.communicate()
            proxy = next(s for s in json.loads(out)["services"] if s["service"] == "proxy")
            wait_for_chain(proxy["ports"][0]["host_port"])
        concurrent["envctl"].append(time.monotonic() - started)
        sh(ENVCTL, "down", "--all", "--environment", "bench")
        started = time.monotonic()
        projects = [f"benchc{round_}x{i}" for i in range(10)]
        procs = [subprocess.Popen(["docker-compose", "-p", p, "-f", compose_fast, "up", "-d", "--quiet-pull"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in projects]
        for proc, project in zip(procs, projects):
            proc.wait()
            port = int(sh("docker-compose", "-p", project, "-f", compose_fast, "port", "proxy", "8080").rsplit(":", 1)[1])
            wait_for_chain(port)
        concurrent["compose 250ms"].append(time.monotonic() - started)
        for project in projects:
            compose_down(compose_fast, project)

    log(f"bench: {args.scale} environments for ls and the reaper")
    memory_up = peak_rss_kib([ENVCTL, "up", "bench-fast", "--envdir", envdir, "--name", "bench-m"])
    for batch in range(0, args.scale - 1, 10):
        ups = [subprocess.Popen([ENVCTL, "up", "bench-fast", "--envdir", envdir, "--name", f"bench-s{i}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for i in range(batch, min(batch + 10, args.scale - 1))]
        for up in ups:
            if up.wait() != 0:
                log("bench: an `up` failed: does the engine have enough address pools for the "
                    "networks? (see the README's Performance section)")
    state = work / "state"
    env = dict(os.environ, ENVCTL_STATE_DIR=str(state))
    containers = len(sh("docker", "ps", "-q", "--filter", "label=io.envctl.environment=bench-fast").split())
    ls, reap = [], []
    for _ in range(args.runs):
        started = time.monotonic()
        sh(ENVCTL, "ls", env=env)
        ls.append(time.monotonic() - started)
        started = time.monotonic()
        sh(ENVCTL, "reap", "--dry-run", env=env)
        reap.append(time.monotonic() - started)
    daemon = subprocess.Popen([sys.executable, "-c",
                               "import resource,subprocess,sys;p=subprocess.Popen(sys.argv[1:]);"
                               "import time;time.sleep(8);p.terminate();p.wait();"
                               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
                               ENVCTL, "reaper", "--every", "1s", "--dry-run"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    memory_daemon = int(daemon.communicate()[0])
    started = time.monotonic()
    sh(ENVCTL, "down", "--all", "--environment", "bench-fast")
    down_all = time.monotonic() - started
    shutil.rmtree(work, ignore_errors=True)

    # --- Report -------------------------------------------------------------------------------
    s = {k: summary(v) for k, v in results.items() if v}
    cores = os.cpu_count()
    docker = sh("docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})").strip()
    compose = sh("docker-compose", "version", "--short").strip()
    envctl_median = s["envctl"]["median"]
    print(f"Machine: {cores} cores, Docker {docker}, docker-compose {compose}.\n")
    print("| measurement | result | target |")
    print("| --- | --- | --- |")
    print(f"| `envctl up`, demo until the chain answers | {fmt(s['envctl'])} | within 10% of the floor |")
    print(f"| critical-path floor: {CRITICAL_PATH_SECONDS} s of delays + {HOPS} × {latency * 1000:.0f} ms engine start latency "
          f"| {floor:.2f} s (envctl / floor = {envctl_median / floor:.2f}) | |")
    for other in ("compose 250ms", "compose default", "seed script"):
        if other in s:
            ratio = envctl_median / s[other]["median"]
            target = {"compose 250ms": "envctl faster", "compose default": "envctl 5x faster"}
            print(f"| {other.replace('compose', 'docker-compose, healthcheck interval')} | {fmt(s[other])} "
                  f"(envctl / it = {ratio:.2f}) | {target.get(other, '')} |")
    c = {k: summary(v) for k, v in concurrent.items()}
    print(f"| 10 environments at once, envctl | {fmt(c['envctl'])} "
          f"({c['envctl']['median'] / envctl_median:.2f} × one) | under 2 × one |")
    print(f"| 10 environments at once, docker-compose 250 ms | {fmt(c['compose 250ms'])} | |")
    print(f"| `envctl ls`, {args.scale} environments ({containers} containers) | {fmt(summary(ls), 'ms', 1000, 0)} | under 300 ms |")
    print(f"| one `envctl reap --dry-run` pass, same | {fmt(summary(reap), 'ms', 1000, 0)} | under 2 s |")
    print(f"| `envctl down` of one environment | {fmt(s['down'])} | under 2 s |")
    print(f"| `envctl down --all` of {args.scale} environments | {down_all:.2f} s | |")
    print(f"| peak memory, `envctl up` | {memory_up / 1024:.1f} MiB | |")
    print(f"| peak memory, `envctl reaper` over {args.scale} environments | {memory_daemon / 1024:.1f} MiB | under 30 MB |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
