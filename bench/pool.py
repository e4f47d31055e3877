#!/usr/bin/env python3
"""The warm pool's benchmark: `envctl up` until the proxy answers, with a ready pool member
against a cold start, on the demo environment with a slow database (oracle-xe's delay 20 s by
default), next to the critical path of the services a member leaves to start, counted two ways:

- measured, as bench/realistic/pool.py does: accounting's own start (a copy of envctl's
  container, created as envctl created it, alone on the network of a running copy of the
  environment, from its create request until GET /health answers) plus the proxy's (from its
  start request until GET /health answers: envctl creates both containers at once, before
  accounting starts), through the engine's API, polled every 10 ms. This includes what a
  container's start costs on the engine, which a cold start pays too;
- the stand-ins' sleeps alone (accounting's 2 s plus the proxy's 1 s), which leaves that out.

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
import http.client
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "bench-pool"
# accounting's --delay and the proxy's, as in environments/demo.yaml.
SLEEPS = 2 + 1


def realistic_pool():
    """bench/realistic/pool.py, for its Docker API client and its own-start measurement."""
    spec = importlib.util.spec_from_file_location("realistic_pool", ROOT / "bench" / "realistic" / "pool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def proxy_answers(port):
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False


def timed_up(binary, envdir):
    """Seconds from `envctl up` until the proxy answers through its published port, and the id."""
    start = time.monotonic()
    up = json.loads(envctl(binary, envdir, "up", NAME, "-o", "json"))
    proxy = next(s for s in up["services"] if s["service"] == "proxy")
    port = proxy["ports"][0]["host_port"]
    deadline = start + 300
    while not proxy_answers(port):
        if time.monotonic() > deadline:
            raise RuntimeError("the proxy never answered")
        time.sleep(0.005)
    return time.monotonic() - start, up["id"]


def median_range(samples):
    return f"{statistics.median(samples):.2f} s ({min(samples):.2f}–{max(samples):.2f})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db-delay", type=int, default=20)
    parser.add_argument("--envctl", default=str(ROOT / "target" / "release" / "envctl"))
    args = parser.parse_args()
    binary = Path(args.envctl)
    bench = realistic_pool()
    api = bench.DockerAPI(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-pool-") as tmp:
        envdir = Path(tmp)
        cold, warm, accounting, proxy = [], [], [], []
        try:
            environment_file(envdir, args.db_delay, 0)
            envctl(binary, envdir, "build", NAME)
            for run in range(args.runs):
                elapsed, id = timed_up(binary, envdir)
                cold.append(elapsed)
                # The own starts, next to the running environment its copies need.
                accounting.append(bench.own_start(api, *bench.settings_of(api, f"accounting_{id}"), 8080,
                                                  "/health", name="bench-pool-critical-path")[0])
                proxy.append(bench.own_start(api, *bench.settings_of(api, f"proxy_{id}"), 8080,
                                             "/health", name="bench-pool-critical-path")[1])
                envctl(binary, envdir, "down", id)
                log(f"cold {run + 1}: {elapsed:.2f}s; own starts: accounting {accounting[-1]:.2f}s, "
                    f"proxy {proxy[-1]:.2f}s")
            environment_file(envdir, args.db_delay, 1)
            for run in range(args.runs):
                envctl(binary, envdir, "pool", "fill", NAME)
                time.sleep(1)
                elapsed, id = timed_up(binary, envdir)
                envctl(binary, envdir, "down", id)
                warm.append(elapsed)
                log(f"adopted {run + 1}: {elapsed:.2f}s")
        finally:
            envctl(binary, envdir, "pool", "drain", NAME, check=False)
            envctl(binary, envdir, "down", "--all", "--environment", NAME, "--yes", check=False)
    measured = statistics.median(accounting) + statistics.median(proxy)
    n = args.runs
    print(f"| measurement (demo, oracle-xe {args.db_delay} s), median of {n} (range) | result "
          f"| vs the measured critical path ({measured:.2f} s) | vs the sleeps alone ({SLEEPS} s) |")
    print("|---|---|---|---|")
    print(f"| accounting's own start (its create request until /health answers) | {median_range(accounting)} | | |")
    print(f"| the proxy's own start (its start request until /health answers) | {median_range(proxy)} | | |")
    print(f"| critical path of the non-pooled services | {measured:.2f} s | 1.00 x | {measured / SLEEPS:.2f} x |")
    for label, samples in (("cold `up` until the proxy answers", cold),
                           ("`up` adopting a ready member, until the proxy answers", warm)):
        m = statistics.median(samples)
        print(f"| {label} | {median_range(samples)} | {m / measured:.2f} x | {m / SLEEPS:.2f} x |")


if __name__ == "__main__":
    sys.exit(main())
