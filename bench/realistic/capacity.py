#!/usr/bin/env python3
"""Issue 21's benchmark on the realistic stack: a burst of 10 CI jobs, each an `envctl run` of
the stack whose command waits for nginx to answer and then runs "tests" (requests through the
whole chain) for a few seconds, started at once without a capacity and with
`envctl capacity --max-environments 3`.

    python3 bench/realistic/capacity.py                 # 3 runs of each burst
    python3 bench/realistic/capacity.py --runs 5 --jobs 10 --max-environments 3 --hold 5

For each burst: the time from launch until each job's environment answered (its place in the
queue included), until each job ended, the total, the failed jobs, the most environments seen
on the engine at once, and the peak memory: of the engine's containers (their memory cgroup,
page cache included) and of the whole host (MemTotal - MemAvailable, /proc/meminfo; the host
runs other work too), both above what was used before the burst. One job alone, for scale.

A capacity is engine-wide and would make everyone else's starts queue, so by default the runs
use a private dockerd of their own (see common.PrivateEngine), which the images are copied
into; `--shared-engine` uses DOCKER_HOST's engine instead (a dedicated host). It prints
Markdown tables with the machine, the build and the load; it asserts nothing. Everything it
creates is removed at the end, the private engine included.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Envctl, LoadWatch, fmt, log  # noqa: E402

NAME = "realbench-burst"

# A CI job's command: wait for nginx, then "test" through the chain for HOLD seconds; prints when
# it first got an answer.
JOB = r"""
import http.client, os, re, sys, time
host, port = os.environ["ENVCTL_NGINX_80"].rsplit(":", 1)
hold = float(sys.argv[1])
def ok():
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=5)
        c.request("GET", "/")
        r = c.getresponse()
        return r.status == 200 and re.match(r"app ok: ", r.read().decode())
    except OSError:
        return False
deadline = time.monotonic() + 300
while not ok():
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.02)
print(time.time(), flush=True)
end = time.monotonic() + hold
failures = 0
while time.monotonic() < end:
    failures += not ok()
    time.sleep(0.1)
sys.exit(1 if failures else 0)
"""


class Sampler(threading.Thread):
    """Samples, every 0.25 s: the host's used memory, the engine's containers' memory, and
    (every 1 s) how many environments have containers on the engine."""

    def __init__(self, envctl, engine):
        super().__init__(daemon=True)
        self.envctl, self.engine = envctl, engine
        self.stop_event = threading.Event()
        self.host_base = common.meminfo_used_bytes()
        self.engine_base = engine.memory_used() if engine else 0
        self.host_peak, self.engine_peak, self.environments_peak = 0, 0, 0

    def run(self):
        last_count = 0.0
        while not self.stop_event.is_set():
            self.host_peak = max(self.host_peak, common.meminfo_used_bytes())
            if self.engine:
                self.engine_peak = max(self.engine_peak, self.engine.memory_used())
            if time.monotonic() - last_count >= 1:
                last_count = time.monotonic()
                # One nginx container per environment of the stack.
                names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", "name=nginx_"],
                                       capture_output=True, text=True, env=self.envctl.env).stdout.split()
                self.environments_peak = max(self.environments_peak, len(names))
            self.stop_event.wait(0.25)

    def stop(self):
        self.stop_event.set()
        self.join()


def burst(envctl, engine, jobs, hold):
    """`jobs` `envctl run`s launched at once: seconds until each answered, until each ended,
    failures, and the sampler's peaks."""
    sampler = Sampler(envctl, engine)
    sampler.start()
    started_wall, started = time.time(), time.monotonic()
    procs = [envctl.popen("run", NAME, "--queue-timeout", "20m", "--", sys.executable, "-c", JOB, str(hold))
             for _ in range(jobs)]
    answered, ended, failures = [], [], []

    def finish(proc):
        out, err = proc.communicate()
        ended.append(time.monotonic() - started)
        lines = out.strip().splitlines()
        if lines:
            answered.append(float(lines[-1]) - started_wall)
        if proc.returncode != 0:
            failures.append(err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}")

    threads = [threading.Thread(target=finish, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sampler.stop()
    return {"answered": sorted(answered), "ended": sorted(ended), "total": max(ended), "failures": failures,
            "host": sampler.host_peak - sampler.host_base, "engine": sampler.engine_peak - sampler.engine_base,
            "host_peak": sampler.host_peak, "environments": sampler.environments_peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of each burst (default 3)")
    parser.add_argument("--jobs", type=int, default=10, help="jobs in a burst (default 10)")
    parser.add_argument("--max-environments", type=int, default=3, help="the capacity (default 3)")
    parser.add_argument("--hold", type=float, default=5.0,
                        help="seconds each job tests once its environment answers (default 5)")
    parser.add_argument("--envctl", default=str(common.default_envctl()), help="the envctl binary")
    parser.add_argument("--rebuild", action="store_true", help="build the images again")
    parser.add_argument("--shared-engine", action="store_true",
                        help="use DOCKER_HOST's engine (sets and clears its capacity!) instead of a private one")
    args = parser.parse_args()
    common.ensure_images(args.rebuild)
    engine = None if args.shared_engine else common.PrivateEngine()
    watch = LoadWatch()
    alone, without, with_capacity = [], [], []
    with tempfile.TemporaryDirectory(prefix="envctl-realbench-") as tmp:
        envctl = None
        try:
            if engine:
                engine.start()
                engine.load([*common.IMAGES.values()])
            envctl = Envctl(args.envctl, tmp, engine)
            common.environment_file(tmp, NAME)
            envctl("capacity", "--clear", check=False)
            log(f"bench: {envctl.binary} ({envctl.build_type()} build), {args.runs} runs of {args.jobs} jobs")
            for run in range(args.runs):
                watch.sample()
                one = burst(envctl, engine, 1, args.hold)
                alone.append(one)
                order = ["without", "with"] if run % 2 == 0 else ["with", "without"]
                for which in order:
                    watch.sample()
                    if which == "with":
                        envctl("capacity", "--max-environments", args.max_environments)
                        with_capacity.append(burst(envctl, engine, args.jobs, args.hold))
                        envctl("capacity", "--clear")
                    else:
                        without.append(burst(envctl, engine, args.jobs, args.hold))
                    watch.sample()
                log(f"bench: run {run + 1}: one {one['answered'][0]:.2f}s; without capacity: last answered "
                    f"{without[-1]['answered'][-1]:.2f}s, total {without[-1]['total']:.2f}s, "
                    f"{len(without[-1]['failures'])} failed; with {args.max_environments}: last answered "
                    f"{with_capacity[-1]['answered'][-1]:.2f}s, total {with_capacity[-1]['total']:.2f}s, "
                    f"{len(with_capacity[-1]['failures'])} failed")
        finally:
            if envctl is not None:
                envctl("capacity", "--clear", check=False)
                envctl.clean(NAME)
            if engine:
                engine.stop()
    report(args, envctl, watch, alone, without, with_capacity)


def report(args, envctl, watch, alone, without, with_capacity):
    where = "a private dockerd on this machine" if not args.shared_engine else "DOCKER_HOST's engine"
    print(common.header("Realistic stack, a burst of CI jobs (issue 21)", envctl, watch)
          + f" Engine: {where}. Each job: `envctl run` whose command waits for nginx, then tests"
            f" through the chain for {args.hold:g} s.")
    print()
    one = statistics.median(b["answered"][0] for b in alone)
    print(f"| {args.jobs} jobs at once | no capacity | `--max-environments {args.max_environments}` |")
    print("| --- | --- | --- |")

    def row(label, pick, unit="s", scale=1.0, digits=2):
        print(f"| {label} | {fmt([pick(b) for b in without], unit, scale, digits)} | "
              f"{fmt([pick(b) for b in with_capacity], unit, scale, digits)} |")

    def each(key, bursts):
        return [x for b in bursts for x in b[key]]

    print(f"| one job alone: until its environment answered | {fmt([b['answered'][0] for b in alone])} | |")
    print(f"| until each environment answered (all jobs of all runs) | {fmt(each('answered', without))} "
          f"| {fmt(each('answered', with_capacity))} |")
    row("until the first answered", lambda b: b["answered"][0])
    row("until the last answered", lambda b: b["answered"][-1])
    row("median job, until answered ÷ one alone", lambda b: statistics.median(b["answered"]) / one, "×")
    row("total: until the last job ended", lambda b: b["total"])
    row("environments on the engine at once, at most", lambda b: b["environments"], "", 1.0, 0)
    row("peak memory of the engine's containers above before", lambda b: b["engine"], "GiB", 1 / 2**30)
    row("peak memory used on the host above before", lambda b: b["host"], "GiB", 1 / 2**30)
    failed_without = sum(len(b["failures"]) for b in without)
    failed_with = sum(len(b["failures"]) for b in with_capacity)
    print(f"| failed jobs, all runs | {failed_without} of {args.jobs * len(without)} | "
          f"{failed_with} of {args.jobs * len(with_capacity)} |")
    for b in without + with_capacity:
        for failure in b["failures"][:3]:
            log(f"bench: a job failed: {failure}")


if __name__ == "__main__":
    sys.exit(main())
