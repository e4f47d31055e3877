#!/usr/bin/env python3
"""What readiness probes cost: the CPU time of dockerd, containerd and its shims (and of envctl)
during `envctl up` of one environment whose only service starts slowly (the demo stand-in with
`--delay`), probed by `tcp:`, by `exec:` with a published port, and by `exec:` alone; with the up
time against the critical-path floor (the delay plus one engine start latency).

    python3 bench/probes.py                                  # target/release/envctl, 3 runs
    python3 bench/probes.py --envctl before=/tmp/envctl-main --envctl after=target/release/envctl

Each `--envctl LABEL=PATH` is one build to compare; the builds alternate within each round. It
needs Docker and the demo image (`python3 bench/run.py` or `envctl build demo` builds it), prints
a Markdown table with the machine and its load average, asserts nothing, and removes everything
it creates (named `bench-probes*`). Not run by `cargo test`.

The engine's CPU is that of the whole dockerd and containerd: on a shared machine it includes
what others ask of them meanwhile, so the count of `docker exec`s (from the engine's events) is
the figure to compare, the CPU a check of it.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import DockerAPI, IMAGE, ROOT, container_start_latency, log, sh  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")

# The service's `ready:` and `ports:` for each way of probing it.
PROBES = {
    "tcp: 8080": ("{tcp: 8080}", "[8080]"),
    "exec:, port 8080 published": ("{exec: [/standin, probe, tcp, \"8080\"]}", "[8080]"),
    "exec:, no port": ("{exec: [/standin, probe, tcp, \"8080\"]}", "[]"),
}


def engine_pids():
    """dockerd (the host's, not a test's private one), containerd and every containerd shim."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = os.path.basename(argv[0].decode(errors="replace"))
        args = b" ".join(argv).decode(errors="replace")
        private = "--data-root" in args or "--exec-root" in args
        if (name == "dockerd" and not private) or name == "containerd" or name.startswith("containerd-shim"):
            pids.append(entry.name)
    return pids


def engine_cpu_seconds():
    """User + system CPU of the engine's processes and their reaped children (the `runc exec`s)."""
    total = 0
    for pid in engine_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of stat(5), 11-14 after the name.
        total += sum(int(f) for f in fields[11:15])
    return total / TICKS


def environment(envdir, probe):
    ready, ports = PROBES[probe]
    name = "bench-probes-" + str(list(PROBES).index(probe))
    (envdir / f"{name}.yaml").write_text(
        f"name: {name}\nservices:\n  slow:\n    image: {IMAGE}\n"
        f"    command: [serve, --port, \"8080\", --delay, {ARGS.delay}]\n"
        f"    ports: {ports}\n    ready: {ready}\n")
    return name


def execs_into(container, since, until):
    """How many `docker exec`s the engine ran in `container` between two times."""
    out = sh("docker", "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
             "--filter", f"container={container}", "--filter", "event=exec_create")
    return len(out.splitlines())


def one_up(envctl, envdir, probe, name):
    """Seconds of `envctl up`, engine CPU seconds meanwhile, envctl's own CPU seconds, execs."""
    file = environment(envdir, probe)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    engine = engine_cpu_seconds()
    since = time.time()
    started = time.monotonic()
    sh(envctl, "up", file, "--envdir", envdir, "--name", name)
    took = time.monotonic() - started
    engine = engine_cpu_seconds() - engine
    until = time.time() + 0.5
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    execs = execs_into(f"slow_{name}", since, until)
    sh(envctl, "down", name)
    return took, engine, own, execs


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envctl", action="append", metavar="LABEL=PATH",
                        help="a build to measure (repeatable; default: target/release/envctl)")
    parser.add_argument("--runs", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--delay", default="10s", help="the slow service's start delay (default 10s)")
    ARGS = parser.parse_args()
    builds = [b.split("=", 1) for b in (ARGS.envctl or [f"envctl={ROOT / 'target' / 'release' / 'envctl'}"])]
    delay = float(ARGS.delay.rstrip("s"))
    work = Path(tempfile.mkdtemp(prefix="envctl-bench-probes-"))
    envdir = work / "environments"
    envdir.mkdir()
    api = DockerAPI()
    latency = statistics.median(container_start_latency(api) for _ in range(3))
    floor = delay + latency
    loads = [os.getloadavg()[0]]
    results = {(label, probe): [] for label, _ in builds for probe in PROBES}
    try:
        for round_ in range(ARGS.runs):
            for probe in PROBES:
                for label, path in builds:
                    log(f"bench: round {round_ + 1}, {label}, {probe}")
                    results[(label, probe)].append(one_up(path, envdir, probe, f"bench-probes-r{round_}"))
                    loads.append(os.getloadavg()[0])
    finally:
        for round_ in range(ARGS.runs):
            subprocess.run([builds[0][1], "down", f"bench-probes-r{round_}"], capture_output=True)
    cpu = sh("sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    print(f"Machine: {os.cpu_count()} cores ({cpu}), Docker "
          + sh("docker", "version", "--format", "{{.Server.Version}}").strip()
          + f"; 1-minute load average {min(loads):.1f}–{max(loads):.1f} during the runs; "
          + f"{ARGS.runs} rounds, medians.\n")
    print(f"Critical-path floor: {delay:g} s delay + {latency * 1000:.0f} ms engine start latency = {floor:.2f} s.\n")
    print("| build | probe | `envctl up` | up / floor | `docker exec`s | dockerd + containerd CPU | share of 2 cores over the up | envctl CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for probe in PROBES:
        for label, _ in builds:
            samples = results[(label, probe)]
            took = statistics.median(s[0] for s in samples)
            engine = statistics.median(s[1] for s in samples)
            own = statistics.median(s[2] for s in samples)
            execs = statistics.median(s[3] for s in samples)
            share = engine / (took * (os.cpu_count() or 1))
            print(f"| {label} | `{probe}` | {took:.2f} s | {took / floor:.2f} | {execs:g} | {engine:.2f} s | {share:.1%} | {own:.2f} s |")


if __name__ == "__main__":
    main()
