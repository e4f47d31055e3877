#!/usr/bin/env python3
"""Resume from pause against wake from stop, through `envctl gateway`: the time from a request
for an idle environment until its answer, once paused (`envctl reap --pause-after`) and once
stopped (`envctl stop`), alternating within each round.

    python3 bench/pause.py                       # 5 rounds, the release build
    python3 bench/pause.py --rounds 3 --envctl target/debug/envctl --no-build

It prints each figure and a Markdown table; it asserts nothing and is not run in CI.
Everything it creates is named `bench-pause*` and removed at the end. Loopback only.
"""

import argparse
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "envctl-demo/oracle-xe:latest"
NAME = "bench-pause"
ID = "bench-pause-1"


def run(*args, **kwargs):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, host, path="/", timeout=120):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def state_on_page(port):
    try:
        _, page = get(port, "localhost")
    except OSError:
        return None
    row = re.search(rf'id="env-{re.escape(ID)}".*?class="state">(\w+)', page, re.S)
    return row.group(1) if row else None


def until(what, done, seconds=60):
    deadline = time.time() + seconds
    while not done():
        if time.time() > deadline:
            sys.exit(f"timed out waiting until {what}")
        time.sleep(0.1)


def timed_request(port):
    began = time.perf_counter()
    status, body = get(port, f"{ID}.localhost")
    took = time.perf_counter() - began
    if status != 200:
        sys.exit(f"the request was answered {status}: {body}")
    return took


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--envctl", default=str(ROOT / "target" / "release" / "envctl"))
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--delay", default="0s", help="the service's own start delay")
    args = parser.parse_args()

    envctl = args.envctl
    if not args.no_build:
        run("cargo", "build", "--release", "--bin", "envctl", cwd=ROOT)
        run("bash", str(ROOT / "demo" / "build-standin.sh"), cwd=ROOT)
    envdir = Path(tempfile.mkdtemp(prefix="bench-pause-"))
    env = dict(os.environ, ENVCTL_ENVDIR=str(envdir), ENVCTL_STATE_DIR=str(envdir / "state"))
    if not args.no_build:
        run(envctl, "build", "demo", cwd=ROOT, env=dict(env, ENVCTL_ENVDIR=str(ROOT / "environments")))
    (envdir / f"{NAME}.yaml").write_text(
        f"name: {NAME}\nservices:\n  web:\n    image: {IMAGE}\n"
        f"    command: [serve, --name, web, --port, \"8080\", --delay, \"{args.delay}\"]\n"
        "    ports: [8080]\n    ready: {http: 8080/health}\n"
    )
    gateway = None
    try:
        run(envctl, "up", NAME, "--name", ID, env=env)
        port = free_port()
        gateway = subprocess.Popen(
            [envctl, "gateway", "--listen", f"127.0.0.1:{port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        until("the gateway routes the environment", lambda: state_on_page(port) == "ready")
        timed_request(port)
        figures = {"resume": [], "wake": []}
        for _ in range(args.rounds):
            # Paused by the reaper's own rule: idle for at least 0 s.
            run(envctl, "reap", "--environment", NAME, "--pause-after", "0s", "--idle", "1h", env=env)
            until("the gateway sees it paused", lambda: state_on_page(port) == "paused")
            figures["resume"].append(timed_request(port))
            until("the gateway sees it ready", lambda: state_on_page(port) == "ready")
            run(envctl, "stop", ID, env=env)
            until("the gateway sees it stopped", lambda: state_on_page(port) == "stopped")
            figures["wake"].append(timed_request(port))
            until("the gateway sees it ready", lambda: state_on_page(port) == "ready")
            print({k: round(v[-1] * 1000, 1) for k, v in figures.items()}, file=sys.stderr)
        ms = {k: [x * 1000 for x in v] for k, v in figures.items()}
        med = {k: statistics.median(v) for k, v in ms.items()}
        span = {k: f"{min(v):.0f}–{max(v):.0f}" for k, v in ms.items()}
        n = args.rounds
        print("| measurement | result | target |")
        print("| --- | --- | --- |")
        print(f"| request to a paused environment until answered (resume) | "
              f"{med['resume']:.0f} ms ({span['resume']}, n={n}) | milliseconds |")
        print(f"| request to a stopped environment until answered (wake) | "
              f"{med['wake']:.0f} ms ({span['wake']}, n={n}) | |")
        print(f"| resume / wake | {med['resume'] / med['wake']:.2f} | |")
    finally:
        if gateway:
            gateway.terminate()
            gateway.wait(timeout=15)
        subprocess.run([envctl, "down", ID, "--ignore-missing"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
