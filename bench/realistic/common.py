"""What the realistic-stack benchmarks share: the images (built from Debian packages, once per
engine: an image already tagged is kept), the environment files, envctl, HTTP through the
proxy, the machine's facts and the figures' format.

The stack is PostgreSQL 15 (a fresh cluster initialised and a seeded schema loaded at every
start), ActiveMQ (Debian's `activemq`, OpenJDK 17), a small Python app (stdlib http.server and
psycopg2) that queries the database and reads the broker's OpenWire greeting, and nginx in
front of it. No image registry is needed: the base is a minimal bookworm root made by
`debootstrap` from the mirror apt already uses, `docker import`ed, and every service image is a
`docker build` on it that installs Debian packages.
"""

import http.client
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PREFIX = "envctl-realbench"
BASE = f"{PREFIX}/bookworm:base"
SERVICES = ("postgres", "activemq", "app", "nginx")
IMAGES = {service: f"{PREFIX}/{service}:latest" for service in SERVICES}
# The answer of the app through nginx once the whole chain works.
ANSWER = re.compile(r"^app ok: postgres accounts=\d+, activemq openwire v\d+$")


def log(message):
    print(message, file=sys.stderr, flush=True)


def sh(*args, check=True, env=None, input=None):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, input=input)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


# --- Images ------------------------------------------------------------------------------------

def mirror():
    """The Debian mirror apt already uses on this machine (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt").glob("sources.list.d/*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                fields = line.split()
                if fields[:1] == ["deb"] and "security" not in line:
                    return next(f for f in fields[1:] if f.startswith("http"))
    return "http://deb.debian.org/debian"


def image_exists(tag):
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def build_base():
    if not shutil.which("debootstrap"):
        sys.exit("bench: needs debootstrap to build the base image (Debian: apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="envctl-realbench-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        started = time.monotonic()
        log(f"bench: debootstrap a minimal bookworm from {mirror()} (a few minutes)")
        sh("debootstrap", "--variant=minbase", "bookworm", rootfs, mirror())
        # Smaller images, and no documentation in them.
        (rootfs / "etc/dpkg/dpkg.cfg.d/01-nodoc").write_text(
            "path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n")
        (rootfs / "etc/apt/apt.conf.d/01-norecommends").write_text(
            'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n')
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "--change", 'CMD ["/bin/bash"]', "-", BASE],
                                  stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise RuntimeError(f"docker import failed: {imported.stderr.strip()}")
        log(f"bench: {BASE} built in {time.monotonic() - started:.0f} s")


def ensure_images(rebuild=False):
    """Builds whatever image is missing (all of them with `rebuild`): the base first."""
    if rebuild:
        for tag in [*IMAGES.values(), BASE]:
            subprocess.run(["docker", "rmi", tag], capture_output=True)
    if not image_exists(BASE):
        build_base()
    for service, tag in IMAGES.items():
        if image_exists(tag):
            continue
        started = time.monotonic()
        log(f"bench: building {tag} from Debian packages")
        # The host's network: apt reaches the mirror as the host does.
        sh("docker", "build", "--network", "host", "--build-arg", f"BASE={BASE}",
           "-t", tag, HERE / "images" / service)
        log(f"bench: {tag} built in {time.monotonic() - started:.0f} s")


# --- A private engine ----------------------------------------------------------------------

class PrivateEngine:
    """A `dockerd` of the benchmark's own (data root, exec root, socket, bridge, address pool and
    cgroup parent of its own), for a measurement that sets engine-wide state, such as a capacity,
    which would otherwise hold up everyone else's starts on a shared engine. Its containers sit
    under one memory cgroup, so their memory is read in one place. The images are copied in with
    `docker save | docker load`; everything it holds is removed when it stops.

    As tests/it/private_engine.rs does: a bridge of its own, no iptables rules, no sysctls, a
    fresh data root every time (a dockerd restarted on a stale default network with an address
    pool deletes the host's docker0), never `--bridge=none`.
    """

    DIR = Path("/tmp/envctl-realbench-engine")
    BRIDGE = "realbench0"
    BRIDGE_ADDRESS = "10.76.1.1/24"
    POOL = "base=10.77.0.0/16,size=24"
    SUBNET = "10.77.0.0/16"
    CGROUP = "envctl-realbench"
    # Containers of one network talk across its bridge, which the host's br_netfilter sends
    # through iptables' FORWARD chain, whose policy the shared engine sets to DROP; without
    # iptables rules of its own, the private engine needs this one (its subnet only).
    FORWARD = ["FORWARD", "-s", SUBNET, "-d", SUBNET, "-m", "comment", "--comment", "envctl-realbench",
               "-j", "ACCEPT"]

    def __init__(self):
        self.host = f"unix://{self.DIR / 'docker.sock'}"
        self.daemon = None

    def env(self):
        return dict(os.environ, DOCKER_HOST=self.host)

    def docker(self, *args, check=True):
        return sh("docker", *args, check=check, env=self.env())

    def start(self):
        pidfile = self.DIR / "docker.pid"
        if pidfile.exists() and Path(f"/proc/{pidfile.read_text().strip()}").exists():
            sys.exit(f"bench: a private engine already runs from {self.DIR} (another run?)")
        self._remove_files()
        (self.DIR / "data").mkdir(parents=True)
        (self.DIR / "daemon.json").write_text("{}")
        subprocess.run(["ip", "link", "del", self.BRIDGE], capture_output=True)
        for args in (["link", "add", self.BRIDGE, "type", "bridge"],
                     ["addr", "add", self.BRIDGE_ADDRESS, "dev", self.BRIDGE],
                     ["link", "set", self.BRIDGE, "up"]):
            sh("ip", *args)
        subprocess.run(["iptables", "-D", *self.FORWARD], capture_output=True)
        sh("iptables", "-I", *self.FORWARD[:1], "1", *self.FORWARD[1:])
        log(f"bench: starting a private dockerd on {self.host}")
        with open(self.DIR / "dockerd.log", "w") as out:
            self.daemon = subprocess.Popen(
                ["dockerd", "--config-file", self.DIR / "daemon.json",
                 "--data-root", self.DIR / "data", "--exec-root", self.DIR / "exec",
                 "--pidfile", pidfile, "-H", self.host, "--bridge", self.BRIDGE,
                 "--iptables=false", "--ip-forward=false", "--storage-driver", "overlay2",
                 "--default-address-pool", self.POOL, "--cgroup-parent", self.CGROUP],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "version"], capture_output=True, env=self.env()).returncode != 0:
            if time.monotonic() > deadline or self.daemon.poll() is not None:
                tail = (self.DIR / "dockerd.log").read_text()[-3000:]
                self.stop()
                raise RuntimeError(f"the private dockerd did not answer; its log:\n{tail}")
            time.sleep(0.2)

    def load(self, tags):
        started = time.monotonic()
        log(f"bench: copying {len(tags)} images into the private engine")
        save = subprocess.Popen(["docker", "save", *tags], stdout=subprocess.PIPE)
        loaded = subprocess.run(["docker", "load", "-q"], stdin=save.stdout, capture_output=True,
                                text=True, env=self.env())
        save.stdout.close()
        save.wait()
        if loaded.returncode != 0 or save.returncode != 0:
            raise RuntimeError(f"docker save | docker load failed: {loaded.stderr.strip()}")
        log(f"bench: images copied in {time.monotonic() - started:.0f} s")

    def memory_cgroups(self):
        """Where the containers' parent memory cgroup may be: cgroup v1 puts it under the memory
        cgroup of the dockerd (which is this process's), or at the root; v2 at the root."""
        candidates = []
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                candidates.append(Path(f"/sys/fs/cgroup/memory{path}/{self.CGROUP}/memory.usage_in_bytes"))
        candidates.append(Path(f"/sys/fs/cgroup/memory/{self.CGROUP}/memory.usage_in_bytes"))
        candidates.append(Path(f"/sys/fs/cgroup/{self.CGROUP}/memory.current"))
        return candidates

    def memory_used(self):
        """Bytes the private engine's containers use now (their memory cgroup, page cache included)."""
        for path in self.memory_cgroups():
            try:
                return int(path.read_text())
            except OSError:
                continue
        return 0

    def stop(self):
        pidfile = self.DIR / "docker.pid"
        pid = self.daemon.pid if self.daemon is not None else (
            int(pidfile.read_text().strip()) if pidfile.exists() else None)
        if pid is not None and Path(f"/proc/{pid}").exists():
            ids = self.docker("ps", "-aq", check=False).split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            for network in self.docker("network", "ls", "--format", "{{.Name}}", check=False).split():
                if network not in ("bridge", "host", "none"):
                    self.docker("network", "rm", network, check=False)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                if self.daemon is not None and self.daemon.poll() is not None:
                    break
                time.sleep(0.1)
            if Path(f"/proc/{pid}").exists() and (self.daemon is None or self.daemon.poll() is None):
                os.kill(pid, signal.SIGKILL)
            if self.daemon is not None:
                self.daemon.wait()
        containerd = self.DIR / "exec" / "containerd" / "containerd.pid"
        if containerd.exists():
            subprocess.run(["kill", containerd.read_text().strip()], capture_output=True)
        subprocess.run(["ip", "link", "del", self.BRIDGE], capture_output=True)
        subprocess.run(["iptables", "-D", *self.FORWARD], capture_output=True)
        self._remove_files()

    def _remove_files(self):
        if not self.DIR.exists():
            return
        # Mounts a killed daemon left under its roots, deepest first.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.DIR))]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.DIR, ignore_errors=True)


# --- Environment files -------------------------------------------------------------------------

def environment_file(envdir, name, pool_size=0):
    """The realistic stack as `envdir/NAME.yaml`, with a warm pool of postgres and activemq when
    `pool_size` is not 0."""
    text = (HERE / "realistic.yaml").read_text().replace("name: realistic", f"name: {name}")
    if pool_size:
        text = text.replace(f"name: {name}\n",
                            f"name: {name}\npool: {{size: {pool_size}, services: [postgres, activemq]}}\n")
    path = Path(envdir) / f"{name}.yaml"
    path.write_text(text)
    return path


# --- envctl ------------------------------------------------------------------------------------

def default_envctl():
    for candidate in (Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "envctl",
                      ROOT / "target" / "release" / "envctl"):
        if candidate.exists():
            return candidate
    return ROOT / "target" / "release" / "envctl"


class Envctl:
    def __init__(self, binary, envdir, engine=None):
        self.binary = Path(binary)
        self.envdir = Path(envdir)
        self.env = dict(os.environ if engine is None else engine.env(),
                        ENVCTL_ENVDIR=str(envdir), ENVCTL_STATE_DIR=str(Path(envdir) / "state"))
        # Jenkins' BUILD_TAG would make every start a CI one; the figures are the same either way.
        self.env.pop("BUILD_TAG", None)

    def args(self, *args):
        return [str(self.binary), *map(str, args)]

    def __call__(self, *args, check=True):
        result = subprocess.run(self.args(*args), capture_output=True, text=True, env=self.env,
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise RuntimeError(f"envctl {' '.join(map(str, args))} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def popen(self, *args, **kwargs):
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(self.args(*args), text=True, env=self.env, stdin=subprocess.DEVNULL, **kwargs)

    def build_type(self):
        return "release" if "release" in self.binary.parts else "debug" if "debug" in self.binary.parts else "?"

    def clean(self, *names):
        """Removes every environment and pool member of these environment names."""
        for name in names:
            self("pool", "drain", name, check=False)
            self("down", "--all", "--environment", name, "--yes", check=False)


def proxy_port(up_json):
    """The host port nginx publishes, from `up -o json`."""
    proxy = next(s for s in up_json["services"] if s["service"] == "nginx")
    return proxy["ports"][0]["host_port"]


# --- HTTP through the proxy --------------------------------------------------------------------

def answers(port):
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read().decode().strip()
        return response.status == 200 and bool(ANSWER.match(body))
    except OSError:
        return False


def wait_until_answers(port, limit=300):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if answers(port):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nginx on port {port} never answered through the whole chain")


# --- Machine facts and load --------------------------------------------------------------------

def loadavg():
    return tuple(float(x) for x in Path("/proc/loadavg").read_text().split()[:3])


def meminfo_used_bytes():
    """Memory in use on the host: MemTotal - MemAvailable."""
    fields = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) * 1024
    return fields["MemTotal"] - fields["MemAvailable"]


def machine():
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    docker = sh("docker", "version", "--format", "{{.Server.Version}}").strip()
    return f"{os.cpu_count()} cores ({cpu}), {mem / 2**30:.0f} GiB, Linux {platform.release()}, Docker {docker}"


class LoadWatch:
    """The 1-minute load average and the host's used memory, sampled while a measurement runs."""

    def __init__(self):
        self.loads, self.memory = [], []

    def sample(self):
        self.loads.append(loadavg()[0])
        self.memory.append(meminfo_used_bytes())

    def load_range(self):
        return f"{min(self.loads):.1f}–{max(self.loads):.1f}" if self.loads else "?"


# --- Figures -----------------------------------------------------------------------------------

def summary(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def fmt(samples, unit="s", scale=1.0, digits=2):
    s = summary(samples)
    unit = f" {unit}" if unit else ""
    return (f"{s['median'] * scale:.{digits}f}{unit} "
            f"({s['min'] * scale:.{digits}f}–{s['max'] * scale:.{digits}f}, n={s['n']})")


def header(title, envctl, watch):
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"{title}: {date}; {machine()}; envctl {envctl.build_type()} build; "
            f"1-minute load average {watch.load_range()} during the runs.")
