#!/usr/bin/env python3
"""Admission's overhead when the engine has room: `envctl up` of a one-service environment,
without a capacity and with one that admits it at once, alternating, on a private `dockerd` of
its own (a capacity is every client's: one set on a shared engine would queue everybody else).

    sudo python3 bench/admission.py                          # 9 runs each, target/debug/envctl
    sudo python3 bench/admission.py --runs 15 --envctl target/release/envctl

Needs root, `dockerd` and `ip` (as the private-engine tests do), and the image
`envctl-test/busybox:1` on the default engine (the test suite builds it), which it copies over.
It prints each run, the medians and their difference; it asserts nothing. It removes its engine,
bridge and files at the end, even when interrupted.
"""

import argparse
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
NAME = "bench-admission"
IMAGE = "envctl-test/busybox:1"
BRIDGE = "envbadm0"


def log(message):
    print(message, file=sys.stderr, flush=True)


class Engine:
    """A private dockerd: own data root, exec root, socket and bridge; no iptables."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="envctl-badm-", dir="/tmp"))
        self.host = f"unix://{self.dir}/docker.sock"
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        for args in (["link", "add", BRIDGE, "type", "bridge"],
                     ["addr", "add", "10.99.251.1/24", "dev", BRIDGE],
                     ["link", "set", BRIDGE, "up"]):
            subprocess.run(["ip", *args], check=True)
        (self.dir / "daemon.json").write_text("{}")
        self.log = open(self.dir / "dockerd.log", "w")
        self.daemon = subprocess.Popen(
            ["dockerd", "--config-file", str(self.dir / "daemon.json"),
             "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
             "--pidfile", str(self.dir / "docker.pid"), "-H", self.host,
             "--bridge", BRIDGE, "--iptables=false", "--ip-forward=false",
             "--storage-driver", "vfs", "--default-address-pool", "base=10.251.0.0/16,size=24"],
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "-H", self.host, "version"],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private engine never answered: see {self.dir}/dockerd.log")
            time.sleep(0.2)

    def load(self, image):
        saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", self.host, "load", "-q"], stdin=saved.stdout,
                       check=True, capture_output=True)
        saved.wait()

    def close(self):
        self.daemon.terminate()
        try:
            self.daemon.wait(15)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        subprocess.run(["umount", "-R", str(self.dir / "exec")], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def envctl(binary, env, *args):
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"envctl {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def timed_up(binary, env):
    start = time.monotonic()
    out = envctl(binary, env, "up", NAME, "-o", "json")
    elapsed = time.monotonic() - start
    envctl(binary, env, "down", json.loads(out)["id"])
    return elapsed


def stamp(line):
    return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp() * 1000


def traced_span(binary, env):
    """Milliseconds of a traced `up` spent on admission: from its first engine call to the first
    call of the start proper (the image lookup), plus the time the start waited on leaving the
    queue (from the entry's removal to the next call, when that call waited for it)."""
    result = subprocess.run([str(binary), "-vv", "up", NAME, "-o", "json"],
                            capture_output=True, text=True, env=env)
    envctl(binary, env, "down", json.loads(result.stdout)["id"])
    calls = [line for line in result.stderr.splitlines() if " TRACE " in line]
    first = stamp(calls[0])
    images = next(stamp(line) for line in calls if "GET /images/" in line)
    span = images - first
    entries = [line.split("name=")[1].split("&")[0] for line in calls
               if "/containers/create?name=envctl-queue-" in line]
    ids = set()
    for line in result.stderr.splitlines():
        if entries and "rename?name=envctl-queue-" in line:
            ids.add(line.split("/containers/")[1].split("/")[0])
    for i, line in enumerate(calls):
        if " DELETE /containers/" in line and i + 1 < len(calls) and entries:
            target = line.split("/containers/")[1].split("?")[0]
            # The queue entry is the only container removed during a successful start.
            if not ids or target in ids:
                span += stamp(calls[i + 1]) - stamp(line)
                break
    return span


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--trace", action="store_true",
                        help="print the stderr of one `up -vv` with a capacity, with timestamps")
    parser.add_argument("--spans", type=int, default=0, metavar="N",
                        help="also time admission's engine calls in N `up -vv` traces each way")
    parser.add_argument("--envctl", default=os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
                        + "/debug/envctl")
    args = parser.parse_args()
    binary = Path(args.envctl).resolve()
    engine = Engine()
    try:
        engine.load(IMAGE)
        work = Path(tempfile.mkdtemp(prefix="envctl-badm-work-"))
        (work / f"{NAME}.yaml").write_text(
            f"name: {NAME}\nservices:\n  app:\n    image: {IMAGE.split(':')[0]}\n"
            f"    tag: '{IMAGE.split(':')[1]}'\n    command: [busybox, sleep, '3600']\n")
        env = dict(os.environ, DOCKER_HOST=engine.host, ENVCTL_ENVDIR=str(work),
                   ENVCTL_STATE_DIR=str(work / "state"))
        env.pop("ENVCTL_HOST", None)
        # One start first, so that both sides find the marker image and the engine warm.
        timed_up(binary, env)
        times = {"without": [], "with": []}
        for run in range(args.runs):
            for side in ("without", "with"):
                if side == "with":
                    envctl(binary, env, "capacity", "--max-environments", "100")
                else:
                    envctl(binary, env, "capacity", "--clear")
                elapsed = timed_up(binary, env)
                times[side].append(elapsed)
                log(f"run {run + 1} {side:>7} a capacity: {elapsed * 1000:.0f} ms")
        if args.spans:
            spans = {"without": [], "with": []}
            for _ in range(args.spans):
                for side in ("without", "with"):
                    if side == "with":
                        envctl(binary, env, "capacity", "--max-environments", "100")
                    else:
                        envctl(binary, env, "capacity", "--clear")
                    spans[side].append(traced_span(binary, env))
            without, with_ = (statistics.median(spans[s]) for s in ("without", "with"))
            print(f"admission's engine calls on the start's path, median of {args.spans} traces: "
                  f"{without:.1f} ms without a capacity, {with_:.1f} ms with one and room")
        if args.trace:
            result = subprocess.run([str(binary), "-vv", "up", NAME, "-o", "json"],
                                    capture_output=True, text=True, env=env)
            log(result.stderr)
            envctl(binary, env, "down", json.loads(result.stdout)["id"])
        envctl(binary, env, "capacity", "--clear")
        without, with_ = (statistics.median(times[s]) * 1000 for s in ("without", "with"))
        # Each run's pair was measured back to back: their difference is less at the mercy of
        # what else the machine does than the difference of the medians.
        paired = statistics.median(w - o for w, o in zip(times["with"], times["without"])) * 1000
        print(f"envctl up, median of {args.runs}: {without:.0f} ms without a capacity, "
              f"{with_:.0f} ms with one and room; admission adds {paired:.0f} ms "
              f"(median of the runs' differences)")
        shutil.rmtree(work, ignore_errors=True)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
