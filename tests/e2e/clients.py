"""Real registry clients for the end-to-end tests: skopeo, podman, docker.

Every call runs as a subprocess with a timeout (Go clients retry a failing
push for about two minutes: the timeout turns that into a prompt failure)
and raises `ClientError` with the command, exit status and captured
stdout/stderr when it fails.

Each wrapper isolates its client from the machine's configuration (its own
HOME, registries.conf, policy, storage, docker config dir), except for one
thing that cannot be isolated for root: containers/image (skopeo, podman)
keeps its blob-info cache -- "where did I see this blob" -- in
/var/lib/containers/cache/blob-info-cache-v1.boltdb whenever euid is 0,
whatever HOME says.  The layouts of oci_layout.py use random layer content,
so the cache never knows a test's blobs from anywhere but that test.

The calls are synchronous (subprocess.run): the registry under test must not
need the test's thread to answer, i.e. it runs in another process (or at
least on a reactor in another thread).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .oci_layout import PulledManifest, read_layout_manifest, sha256_digest

DEFAULT_TIMEOUT = float(os.environ.get("OCIREG_E2E_CLIENT_TIMEOUT", "90"))

# A permissive signature policy: the machine's /etc/containers/policy.json is
# not ours to depend on.
INSECURE_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


class ClientError(AssertionError):
    """A client command failed or timed out.  An AssertionError so that
    pytest shows it as a test failure, with the full output."""

    def __init__(self, argv, returncode, stdout, stderr, timed_out=False, timeout=None):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = _text(stdout)
        self.stderr = _text(stderr)
        self.timed_out = timed_out
        what = (
            f"timed out after {timeout:.0f}s" if timed_out else f"exited with status {returncode}"
        )
        super().__init__(
            f"{' '.join(map(str, self.argv))}\n  {what}\n"
            f"--- stdout ---\n{_tail(self.stdout)}\n--- stderr ---\n{_tail(self.stderr)}"
        )


def _text(b) -> str:
    if b is None:
        return ""
    if isinstance(b, bytes):
        return b.decode("utf-8", "replace")
    return b


def _tail(s: str, limit: int = 20000) -> str:
    return s if len(s) <= limit else "[…]\n" + s[-limit:]


@dataclass
class Result:
    argv: list
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


def run(argv, *, env=None, timeout=DEFAULT_TIMEOUT, check=True, cwd=None) -> Result:
    """Run a command in its own process group; kill the whole group on timeout."""
    argv = [str(a) for a in argv]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate()
        raise ClientError(argv, None, stdout, stderr, timed_out=True, timeout=timeout) from None
    if check and proc.returncode != 0:
        raise ClientError(argv, proc.returncode, stdout, stderr)
    return Result(argv, proc.returncode, stdout, stderr)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _isolated_env(home: Path, **extra) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
    }
    env.update({k: str(v) for k, v in extra.items()})
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def _containers_config(workdir: Path) -> dict:
    """Private registries.conf, policy.json, registries.d for containers/image tools."""
    workdir.mkdir(parents=True, exist_ok=True)
    registries_conf = workdir / "registries.conf"
    registries_conf.write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
    policy = workdir / "policy.json"
    policy.write_text(json.dumps(INSECURE_POLICY))
    registries_d = workdir / "registries.d"
    registries_d.mkdir(exist_ok=True)
    return {"registries_conf": registries_conf, "policy": policy, "registries_d": registries_d}


def digest_of(data: bytes) -> str:
    return sha256_digest(data)


# -- skopeo ------------------------------------------------------------------


class Skopeo:
    """skopeo 1.9 with plain-HTTP registries (`--*-tls-verify=false`)."""

    def __init__(self, workdir: os.PathLike | str, timeout: float = DEFAULT_TIMEOUT):
        self.workdir = Path(workdir)
        self.timeout = timeout
        cfg = _containers_config(self.workdir / "config")
        self.env = _isolated_env(
            self.workdir / "home", CONTAINERS_REGISTRIES_CONF=cfg["registries_conf"]
        )
        self.global_args = [
            "--policy",
            cfg["policy"],
            "--registries.d",
            cfg["registries_d"],
            "--command-timeout",
            f"{int(timeout)}s",
        ]

    def __call__(self, *args, debug=False, timeout=None, check=True) -> Result:
        argv = ["skopeo", *(["--debug"] if debug else []), *self.global_args, *args]
        return run(argv, env=self.env, timeout=timeout or self.timeout + 10, check=check)

    def copy(
        self,
        src: str,
        dest: str,
        *,
        all=False,
        digestfile=None,
        extra=(),
        debug=False,
        timeout=None,
    ) -> Result:
        args = ["copy"]
        if src.startswith("docker://"):
            args.append("--src-tls-verify=false")
        if dest.startswith("docker://"):
            args.append("--dest-tls-verify=false")
        if all:
            args.append("--all")
        if digestfile:
            args += ["--digestfile", digestfile]
        args += [*extra, src, dest]
        return self(*args, debug=debug, timeout=timeout)

    def push(self, src: str, dest: str, **kw) -> str:
        """Copy `src` to the registry reference `dest` (docker://…); return
        the digest skopeo says it pushed."""
        fd, digestfile = tempfile.mkstemp(dir=self.workdir, prefix="digest-")
        os.close(fd)
        try:
            self.copy(src, dest, digestfile=digestfile, **kw)
            return Path(digestfile).read_text().strip()
        finally:
            os.unlink(digestfile)

    def inspect_raw(self, ref: str, check=True) -> Result:
        """`skopeo inspect --raw`: the manifest bytes exactly as served."""
        return self("inspect", "--raw", "--tls-verify=false", ref, check=check)

    def manifest_bytes(self, ref: str) -> bytes:
        return self.inspect_raw(ref).stdout

    def manifest_digest(self, ref: str) -> str:
        return digest_of(self.manifest_bytes(ref))

    def manifest(self, ref: str) -> dict:
        return json.loads(self.manifest_bytes(ref))

    def config(self, ref: str) -> dict:
        """The image config blob as served (`inspect --config --raw`)."""
        return json.loads(self("inspect", "--config", "--raw", "--tls-verify=false", ref).stdout)

    def delete(self, ref: str) -> Result:
        return self("delete", "--tls-verify=false", ref)

    def pull_oci(
        self, ref: str, dest_dir: os.PathLike | str, tag: str = "pulled", *, all=False
    ) -> PulledManifest:
        """`skopeo copy docker://… oci:<dest>:<tag>`; returns the manifest as
        stored, its digest checked against its bytes.  OCI manifests are
        copied byte-for-byte; Docker ones would be converted (use pull_dir)."""
        self.copy(ref, f"oci:{dest_dir}:{tag}", all=all)
        return read_layout_manifest(dest_dir, tag)

    def pull_dir(self, ref: str, dest_dir: os.PathLike | str, *, all=False) -> PulledManifest:
        """`skopeo copy docker://… dir:<dest>`: any manifest, byte-for-byte."""
        self.copy(ref, f"dir:{dest_dir}", all=all)
        raw = (Path(dest_dir) / "manifest.json").read_bytes()
        mt = json.loads(raw).get("mediaType", "")
        return PulledManifest(digest_of(raw), mt, raw)


def manifest_unknown(error: ClientError) -> bool:
    """Did a containers/image client say the manifest is not in the registry
    (the MANIFEST_UNKNOWN error code, printed as "manifest unknown")?"""
    return "manifest unknown" in error.stderr.lower()


# -- podman ------------------------------------------------------------------


class Podman:
    """podman 4.3 with a private vfs store (--root/--runroot under workdir),
    private containers.conf/storage.conf/registries.conf, and a private HOME."""

    def __init__(self, workdir: os.PathLike | str, timeout: float = DEFAULT_TIMEOUT):
        self.workdir = Path(workdir)
        self.timeout = timeout
        cfg = _containers_config(self.workdir / "config")
        self.root = self.workdir / "root"
        # podman refuses a runroot longer than 50 characters
        self.runroot = Path(tempfile.mkdtemp(prefix="ocireg-podman-run-", dir="/tmp"))
        self.tmpdir = self.workdir / "tmp"
        for d in (self.root, self.runroot, self.tmpdir):
            d.mkdir(parents=True, exist_ok=True)
        storage_conf = self.workdir / "config" / "storage.conf"
        storage_conf.write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{self.runroot}"\ngraphroot = "{self.root}"\n'
        )
        containers_conf = self.workdir / "config" / "containers.conf"
        containers_conf.write_text(
            '[engine]\nevents_logger = "file"\n'
            f'events_logfile_path = "{self.workdir}/events.log"\n'
            'cgroup_manager = "cgroupfs"\n'
        )
        self.env = _isolated_env(
            self.workdir / "home",
            CONTAINERS_REGISTRIES_CONF=cfg["registries_conf"],
            CONTAINERS_STORAGE_CONF=storage_conf,
            CONTAINERS_CONF=containers_conf,
            XDG_RUNTIME_DIR=self.runroot,
        )
        self.policy = cfg["policy"]
        self.global_args = [
            "--root",
            self.root,
            "--runroot",
            self.runroot,
            "--storage-driver",
            "vfs",
            "--tmpdir",
            self.tmpdir,
            "--events-backend",
            "file",
            "--cgroup-manager",
            "cgroupfs",
        ]

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)

    def __call__(self, *args, timeout=None, check=True) -> Result:
        argv = ["podman", *self.global_args, *args]
        return run(argv, env=self.env, timeout=timeout or self.timeout, check=check)

    def load_layout(self, layout_ref: str, name: str) -> str:
        """`podman pull oci:<dir>:<tag>` into the vfs store, tag it `name`;
        return the image id (= config digest, without `sha256:`)."""
        out = self("pull", "--signature-policy", self.policy, layout_ref).out
        image_id = out.split()[-1]  # `podman pull` prints the image id last
        self("tag", image_id, name)
        return image_id

    def image_id(self, ref: str) -> str:
        out = self("image", "inspect", "--format", "{{.Id}}", ref).out.strip()
        return out.splitlines()[0]

    def inspect(self, ref: str) -> dict:
        return json.loads(self("image", "inspect", ref).stdout)[0]

    def push(self, image: str, dest: str) -> str:
        """`podman push` to `dest` (host/repo:tag); return the digest podman pushed."""
        digestfile = self.workdir / f"digest-{os.urandom(4).hex()}"
        self(
            "push",
            "--tls-verify=false",
            "--signature-policy",
            self.policy,
            "--digestfile",
            digestfile,
            image,
            f"docker://{dest}",
        )
        return digestfile.read_text().strip()

    def pull(self, ref: str) -> Result:
        return self(
            "pull", "--tls-verify=false", "--signature-policy", self.policy, f"docker://{ref}"
        )

    def rmi(self, *refs: str) -> Result:
        return self("rmi", "--force", *refs)

    def images(self) -> list:
        return json.loads(self("images", "--format", "json").stdout or b"[]")

    def manifest_create(self, name: str) -> Result:
        return self("manifest", "create", name)

    def manifest_add(self, name: str, ref: str, *extra) -> Result:
        return self("manifest", "add", *extra, name, ref)

    def manifest_push_all(self, name: str, dest: str) -> str:
        """`podman manifest push --all`; return the digest of the pushed index."""
        digestfile = self.workdir / f"digest-{os.urandom(4).hex()}"
        self(
            "manifest",
            "push",
            "--all",
            "--tls-verify=false",
            "--digestfile",
            digestfile,
            name,
            f"docker://{dest}",
        )
        return digestfile.read_text().strip()


# -- docker ------------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 2.0):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class DockerDaemon:
    """A private dockerd (docker.io 20.10): vfs storage, no iptables, no
    bridge, its own data-root/exec-root/socket/pidfile/config file under a
    short temp dir (unix socket paths are limited to 108 bytes), and its own
    containerd (dockerd starts one under exec-root when --containerd is not
    given).  127.0.0.0/8 is an insecure (plain-HTTP) registry range by
    default; ::1 is added explicitly."""

    START_TIMEOUT = 60.0
    STOP_TIMEOUT = 20.0

    def __init__(self, base: os.PathLike | str | None = None):
        self.base = Path(base or tempfile.mkdtemp(prefix="ocireg-dockerd-", dir="/tmp"))
        self.socket = self.base / "docker.sock"
        self.pidfile = self.base / "docker.pid"
        self.log_path = self.base / "dockerd.log"
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def argv(self) -> list[str]:
        config = self.base / "daemon.json"
        config.write_text("{}\n")
        return [
            "dockerd",
            "--config-file",
            str(config),
            "--storage-driver=vfs",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--userland-proxy=false",
            "--insecure-registry=::1/128",
            "--data-root",
            str(self.base / "data"),
            "--exec-root",
            str(self.base / "exec"),
            "-H",
            self.host,
            "--pidfile",
            str(self.pidfile),
        ]

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"dockerd exited with status {self.proc.returncode}:\n{self.log_tail()}"
                )
            if self.ping():
                self._check_insecure_loopback()
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"dockerd did not answer within {self.START_TIMEOUT}s:\n{self.log_tail()}"
        )

    def ping(self) -> bool:
        if not self.socket.exists():
            return False
        conn = _UnixHTTPConnection(str(self.socket))
        try:
            conn.request("GET", "/_ping")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def info(self) -> dict:
        conn = _UnixHTTPConnection(str(self.socket), timeout=10)
        try:
            conn.request("GET", "/info")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def _check_insecure_loopback(self) -> None:
        cidrs = (self.info().get("RegistryConfig") or {}).get("InsecureRegistryCIDRs") or []
        if "127.0.0.0/8" not in cidrs or "::1/128" not in cidrs:
            self.stop()
            raise RuntimeError(f"dockerd does not treat loopback as insecure: {cidrs}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _containerd_pid(self) -> int | None:
        try:
            return int((self.base / "exec" / "containerd" / "containerd.pid").read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """SIGTERM dockerd, wait (bounded), then SIGKILL it and the containerd
        it started (by the pid it wrote), then remove the temp dir."""
        if self.proc is None:
            return
        containerd_pid = self._containerd_pid()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if containerd_pid:
            _wait_gone_or_kill(containerd_pid, 10.0)
        self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone_or_kill(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Docker:
    """The docker CLI (28.x; it negotiates API 1.41 with dockerd 20.10 by
    itself) talking to a private dockerd, with a private DOCKER_CONFIG (no
    credential helpers, no machine-wide config)."""

    def __init__(
        self,
        daemon: DockerDaemon,
        workdir: os.PathLike | str,
        skopeo: Skopeo | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        self.daemon = daemon
        self.workdir = Path(workdir)
        self.timeout = timeout
        config_dir = self.workdir / "docker-config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "config.json").write_text("{}\n")
        self.env = _isolated_env(
            self.workdir / "home",
            DOCKER_HOST=daemon.host,
            DOCKER_CONFIG=config_dir,
            DOCKER_CLI_HINTS="false",
        )
        self.skopeo = skopeo or Skopeo(self.workdir / "skopeo", timeout)

    def __call__(self, *args, timeout=None, check=True) -> Result:
        return run(["docker", *args], env=self.env, timeout=timeout or self.timeout, check=check)

    def load_layout(self, layout_ref: str, name: str) -> str:
        """Put an image from an OCI layout (or dir:) into dockerd as `name`
        (`skopeo copy … docker-daemon:<name>`); return its image id."""
        self.skopeo(
            "copy", "--dest-daemon-host", self.daemon.host, layout_ref, f"docker-daemon:{name}"
        )
        return self.image_id(name)

    def image_id(self, ref: str) -> str:
        return self("image", "inspect", "--format", "{{.Id}}", ref).out.strip()

    def repo_digests(self, ref: str) -> list[str]:
        return (
            json.loads(self("image", "inspect", "--format", "{{json .RepoDigests}}", ref).out) or []
        )

    def inspect(self, ref: str) -> dict:
        return json.loads(self("image", "inspect", ref).stdout)[0]

    def push(self, ref: str) -> DockerPush:
        r = self("push", ref)
        m = re.search(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)", r.out)
        if not m:
            raise ClientError(
                r.argv,
                r.returncode,
                r.stdout,
                r.stderr + b"\n(no 'digest: ... size: ...' line in the output)",
            )
        mounted = re.findall(r"^([0-9a-f]{12}): Mounted from (\S+)", r.out, re.M)
        pushed = re.findall(r"^([0-9a-f]{12}): Pushed", r.out, re.M)
        exists = re.findall(r"^([0-9a-f]{12}): Layer already exists", r.out, re.M)
        return DockerPush(m.group(1), int(m.group(2)), dict(mounted), pushed, exists, r.out)

    def pull(self, ref: str) -> Result:
        return self("pull", ref)

    def tag(self, src: str, dest: str) -> Result:
        return self("tag", src, dest)

    def rmi(self, *refs: str) -> Result:
        return self("rmi", "--force", *refs)

    def has_image(self, ref: str) -> bool:
        return self("image", "inspect", ref, check=False).returncode == 0


@dataclass
class DockerPush:
    digest: str
    size: int
    mounted: dict  # short layer id -> repository it was mounted from
    pushed: list
    already_exists: list
    output: str


# -- plain HTTP --------------------------------------------------------------


@dataclass
class HTTPResponse:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


def http_get(url: str, headers: dict | None = None, timeout: float = 30.0) -> HTTPResponse:
    """A GET that returns error statuses instead of raising."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HTTPResponse(
                resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
            )
    except urllib.error.HTTPError as e:
        return HTTPResponse(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def sha256_file(path: os.PathLike | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
