#!/usr/bin/env python3
"""The gateway's overhead: latency and throughput through `envctl gateway` against direct to
the environment's published port, on loopback, with envctl's own load generator
(`examples/load.rs`).

    python3 bench/gateway.py            # 3 rounds of 10 s per figure (about 3 minutes)
    python3 bench/gateway.py --rounds 1 --seconds 5

It prints the figures and a Markdown table; it asserts nothing. Everything it creates is named
`bench-gw*` and removed at the end. Loopback only, every load bounded in time.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVCTL = ROOT / "target" / "release" / "envctl"
LOAD = ROOT / "target" / "release" / "examples" / "load"
IMAGE = "envctl-demo/oracle-xe:latest"
NAME = "bench-gw"
ID = "bench-gw-1"


def run(*args, **kwargs):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(mode, url, host, amount, seconds):
    out = run(str(LOAD), mode, url, host, str(amount), str(seconds)).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    run("cargo", "build", "--release", "--bin", "envctl", "--example", "load", cwd=ROOT)
    run("bash", str(ROOT / "demo" / "build-standin.sh"), cwd=ROOT)
    envdir = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    env = dict(os.environ, ENVCTL_ENVDIR=str(envdir), ENVCTL_STATE_DIR=str(envdir / "state"))
    run(str(ENVCTL), "build", "demo", cwd=ROOT, env=dict(env, ENVCTL_ENVDIR=str(ROOT / "environments")))
    (envdir / f"{NAME}.yaml").write_text(
        f"name: {NAME}\nservices:\n  web:\n    image: {IMAGE}\n"
        "    command: [serve, --name, web, --port, \"8080\"]\n"
        "    ports: [8080]\n    ready: {http: 8080/health}\n"
    )
    gateway = None
    try:
        up = json.loads(run(str(ENVCTL), "up", NAME, "--name", ID, "-o", "json", env=env).stdout)
        port = next(p["host_port"] for s in up["services"] for p in s["ports"])
        gw_port = free_port()
        gateway = subprocess.Popen(
            [str(ENVCTL), "gateway", "--listen", f"127.0.0.1:{gw_port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        direct = (f"http://127.0.0.1:{port}/", "localhost")
        through = (f"http://127.0.0.1:{gw_port}/", f"{ID}.localhost")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if load("max", *through, 1, 1)["requests"] > 0:
                    break
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.5)
        figures = {"direct": {"p50": [], "p99": [], "rps": []},
                   "gateway": {"p50": [], "p99": [], "rps": []}}
        for _ in range(args.rounds):
            # The two paths alternate within each round.
            for label, target in (("direct", direct), ("gateway", through)):
                latency = load("rate", *target, args.rate, args.seconds)
                throughput = load("max", *target, args.connections, args.seconds)
                figures[label]["p50"].append(latency["p50_ms"])
                figures[label]["p99"].append(latency["p99_ms"])
                figures[label]["rps"].append(throughput["per_second"])
                print(label, latency, throughput, file=sys.stderr)
        med = {k: {m: statistics.median(v) for m, v in f.items()} for k, f in figures.items()}
        overhead = med["gateway"]["p99"] - med["direct"]["p99"]
        share = med["gateway"]["rps"] / med["direct"]["rps"]
        print(f"| measurement | direct | through the gateway | result | target |")
        print(f"| --- | --- | --- | --- | --- |")
        print(f"| p50 latency at {args.rate} req/s | {med['direct']['p50']:.2f} ms | "
              f"{med['gateway']['p50']:.2f} ms | +{med['gateway']['p50'] - med['direct']['p50']:.2f} ms | |")
        print(f"| p99 latency at {args.rate} req/s | {med['direct']['p99']:.2f} ms | "
              f"{med['gateway']['p99']:.2f} ms | +{overhead:.2f} ms | under +1 ms |")
        print(f"| throughput, {args.connections} connections | {med['direct']['rps']:.0f} req/s | "
              f"{med['gateway']['rps']:.0f} req/s | {share:.0%} of direct | at least 70% |")
        print(f"(medians of {args.rounds} rounds of {args.seconds} s)")
    finally:
        if gateway:
            gateway.terminate()
            gateway.wait(timeout=15)
        subprocess.run([str(ENVCTL), "down", ID, "--ignore-missing"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
