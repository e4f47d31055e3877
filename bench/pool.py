#!/usr/bin/env python3
"""The warm pool's benchmark: `envctl up` until the proxy answers, with a ready pool member
against a cold start, on the demo environment with a slow database (oracle-xe's delay 20 s by
default), next to the critical path of the services a member leaves to start (accounting's
own delay plus the proxy's).

    python3 bench/pool.py                      # 5 runs each, target/release/envctl
    python3 bench/pool.py --runs 3 --db-delay 20 --envctl target/debug/envctl

It prints figures and a Markdown table; it asserts nothing. Everything it creates belongs to
the environment `bench-pool` and is removed at the end.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "bench-pool"
# accounting's --delay and the proxy's, as in environments/demo.yaml.
NON_POOLED_CRITICAL_PATH = 2 + 1


def log(message):
    print(message, file=sys.stderr, flush=True)


def envctl(binary, envdir, *args, check=True):
    env = dict(os.environ, ENVCTL_ENVDIR=str(envdir))
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(f"envctl {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def environment_file(envdir, db_delay, pool_size):
    demo = (ROOT / "environments" / "demo.yaml").read_text()
    demo = demo.replace("name: demo", f"name: {NAME}")
    demo = demo.replace("../demo/image", str(ROOT / "demo" / "image"))
    demo = demo.replace('"1521", --delay, 3s]', f'"1521", --delay, {db_delay}s]')
    if pool_size:
        demo = demo.replace(f"name: {NAME}", f"name: {NAME}\npool: {{size: {pool_size}, services: [oracle-xe, activemq]}}")
    (envdir / f"{NAME}.yaml").write_text(demo)


def timed_up(binary, envdir):
    start = time.monotonic()
    out = envctl(binary, envdir, "up", NAME, "-o", "json")
    elapsed = time.monotonic() - start
    return elapsed, json.loads(out)["id"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db-delay", type=int, default=20)
    parser.add_argument("--envctl", default=str(ROOT / "target" / "release" / "envctl"))
    args = parser.parse_args()
    binary = Path(args.envctl)
    with tempfile.TemporaryDirectory(prefix="bench-pool-") as tmp:
        envdir = Path(tmp)
        cold, warm = [], []
        try:
            environment_file(envdir, args.db_delay, 0)
            envctl(binary, envdir, "build", NAME)
            for run in range(args.runs):
                elapsed, id = timed_up(binary, envdir)
                envctl(binary, envdir, "down", id)
                cold.append(elapsed)
                log(f"cold {run + 1}: {elapsed:.2f}s")
            environment_file(envdir, args.db_delay, 1)
            for run in range(args.runs):
                envctl(binary, envdir, "pool", "fill", NAME)
                elapsed, id = timed_up(binary, envdir)
                envctl(binary, envdir, "down", id)
                warm.append(elapsed)
                log(f"adopted {run + 1}: {elapsed:.2f}s")
        finally:
            envctl(binary, envdir, "pool", "drain", NAME, check=False)
            envctl(binary, envdir, "down", "--all", "--environment", NAME, "--yes", check=False)
    cold_median, warm_median = statistics.median(cold), statistics.median(warm)
    print(f"| start (demo, oracle-xe {args.db_delay} s) | median of {args.runs} | vs the non-pooled critical path ({NON_POOLED_CRITICAL_PATH} s) |")
    print("|---|---|---|")
    print(f"| cold `up` | {cold_median:.2f} s | {cold_median / NON_POOLED_CRITICAL_PATH:.2f} x |")
    print(f"| `up` adopting a ready member | {warm_median:.2f} s | {warm_median / NON_POOLED_CRITICAL_PATH:.2f} x |")


if __name__ == "__main__":
    sys.exit(main())
