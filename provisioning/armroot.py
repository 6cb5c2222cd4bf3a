"""A Debian arm64 root file system run under qemu-user on an x86 machine: where the wheels a
counter needs are built (`hailong provision wheels`) and where the suite proves the first boot.

The root is made once per (suite, package list) by debootstrap and kept as a tar.zst under
~/.cache/hailong/arm64-roots/ (outside any checkout, ~170 MB); each use unpacks a throw-away
copy. Commands run through `unshare --mount` (and `--net` to cut the network), so the /proc and
/dev mounts they need vanish with them, whatever happens. Needs root, debootstrap,
qemu-user-static with binfmt_misc, zstd: `make system-deps` installs them.
"""
from __future__ import annotations

import configparser
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

# python3-dev and gcc: spidev (and any other sdist) builds from source in the root.
BASE_PACKAGES = ("python3-venv", "python3-dev", "gcc", "libc6-dev")
QEMU_BINFMT = "/proc/sys/fs/binfmt_misc"
HOST_CA = "/etc/ssl/certs/hailong-host-ca.pem"
FALLBACK_MIRROR = "http://deb.debian.org/debian"


class ArmRootError(Exception):
    pass


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "hailong" / "arm64-roots"


def apt_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (one-line and deb822 formats), so debootstrap
    goes where apt is allowed to go."""
    candidates = []
    for path in sorted([etc / "sources.list", *(etc / "sources.list.d").glob("*.list")]):
        for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else ():
            words = line.split("#", 1)[0].split()
            if words[:1] == ["deb"]:
                words = [w for w in words[1:] if not w.startswith("[")]
                candidates += words[:1]
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        for block in path.read_text(encoding="utf-8").split("\n\n"):
            fields = dict(line.split(":", 1) for line in block.splitlines()
                          if ":" in line and not line.startswith(("#", " ")))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes").strip() != "no":
                candidates += fields.get("URIs", "").split()
    for uri in candidates:
        if uri.startswith("http") and "security" not in uri:
            return uri.rstrip("/")
    return FALLBACK_MIRROR


def missing_tools() -> str | None:
    """Why an arm64 root cannot run here, or None. Registers qemu-aarch64 with binfmt_misc
    when it can (root in a container: the file system is not mounted by an init)."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, unshare)"
    for tool in ("debootstrap", "unshare", "chroot", "zstd"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (make system-deps installs qemu-user-static debootstrap binfmt-support zstd)"
    if not os.path.exists("/usr/bin/qemu-aarch64-static") and not os.path.exists("/usr/libexec/qemu-binfmt/aarch64-binfmt-P"):
        return "qemu-user-static not installed"
    if not os.path.exists(f"{QEMU_BINFMT}/register"):
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", QEMU_BINFMT], capture_output=True)
    if not os.path.exists(f"{QEMU_BINFMT}/qemu-aarch64") and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    try:
        if "enabled" not in Path(f"{QEMU_BINFMT}/qemu-aarch64").read_text():
            return "binfmt_misc has qemu-aarch64 disabled"
    except OSError:
        return f"binfmt_misc unavailable ({QEMU_BINFMT}): cannot run arm64 programs here"
    return None


def _key(suite: str, packages: tuple[str, ...]) -> str:
    spec = json.dumps({"suite": suite, "arch": "arm64", "variant": "minbase", "packages": sorted(packages)})
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def root_tarball(suite: str, packages: tuple[str, ...] = BASE_PACKAGES, log=print) -> Path:
    """The cached root for this suite and package list, made by debootstrap if missing (~3 min)."""
    reason = missing_tools()
    if reason:
        raise ArmRootError(f"cannot make an arm64 root: {reason}")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"{suite}-arm64-{_key(suite, packages)}.tar.zst"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs must not build the same root at once
        if tarball.exists():
            return tarball
        mirror = apt_mirror()
        log(f"building the {suite} arm64 root with debootstrap from {mirror} (once, a few minutes)")
        work = Path(tempfile.mkdtemp(prefix=f".{suite}-", dir=cache))
        try:
            cmd = ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(packages)}",
                   suite, str(work / "root"), mirror]
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", *cmd],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise ArmRootError(f"debootstrap failed ({r.returncode}): {(r.stdout + r.stderr)[-2000:]}")
            shutil.rmtree(work / "root" / "var" / "cache" / "apt" / "archives", ignore_errors=True)
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "--zstd", "-C", str(work / "root"), "-cf", str(partial), "."], check=True)
            os.replace(partial, tarball)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return tarball


def host_pip_settings() -> dict[str, str]:
    """The host's index and trust settings for pip, minus what points at this machine's own
    files (file:// indexes, find-links, constraints): those do not exist inside the root."""
    found: dict[str, str] = {}
    files = [Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf"),
             Path(os.path.expanduser("~/.pip/pip.conf")), Path(os.path.expanduser("~/.config/pip/pip.conf"))]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    for path in files:
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        for section in ("global", "install", "download", "wheel"):
            if parser.has_section(section):
                found.update({k: v for k, v in parser.items(section) if k in ("index-url", "extra-index-url",
                                                                               "trusted-host", "cert", "timeout")})
    for name in ("index-url", "extra-index-url", "trusted-host", "cert", "default-timeout"):
        value = os.environ.get("PIP_" + name.upper().replace("-", "_"))
        if value:
            found["timeout" if name == "default-timeout" else name] = value
    for key in ("index-url", "extra-index-url"):
        if key in found:
            urls = [u for u in found[key].split() if not u.startswith("file:")]
            found[key] = " ".join(urls)
            if not urls:
                del found[key]
    return found


class ArmRoot:
    """A throw-away copy of a cached root: `with ArmRoot(tarball) as root: root.run([...])`."""

    def __init__(self, tarball: Path, workdir: Path | None = None, pip_cache: Path | None = None):
        self.tarball = tarball
        # pip's cache kept on the host between throw-away roots: downloads and spidev's build, once.
        self.pip_cache = pip_cache
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="hailong-arm64-")
        self.path = Path(workdir or self._tmp.name) / "root"

    def __enter__(self) -> "ArmRoot":
        self.path.mkdir(parents=True)
        subprocess.run(["tar", "--zstd", "-C", str(self.path), "-xf", str(self.tarball)], check=True)
        self._trust_the_host()
        return self

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def _trust_the_host(self) -> None:
        """DNS, the CA bundle and pip's index settings of this machine, for builds in the root."""
        shutil.copyfile("/etc/resolv.conf", self.path / "etc" / "resolv.conf")
        settings = host_pip_settings()
        ca = settings.pop("cert", None) or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
        lines = ["[global]"]
        if os.path.isfile(ca):
            shutil.copyfile(ca, self.path / HOST_CA.lstrip("/"))
            lines.append(f"cert = {HOST_CA}")
        lines += [f"{k} = {v}" for k, v in sorted(settings.items())]
        (self.path / "etc" / "pip.conf").write_text("\n".join(lines) + "\n")

    def host_path(self, inside: str) -> Path:
        return self.path / inside.lstrip("/")

    def command(self, argv: list[str] | str, *, network: bool = True, env: dict | None = None) -> list[str]:
        """The host command that runs `argv` in the root as root (a shell line if a string);
        every step execs the next, so the process started is the one to signal."""
        inner = ["/bin/sh", "-c", argv] if isinstance(argv, str) else argv
        base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}
        base.update({k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy", "no_proxy")})
        base.update(env or {})
        root = shlex.quote(str(self.path))
        mounts = [f"mount -t proc proc {root}/proc", f"mount --rbind /dev {root}/dev"]
        if self.pip_cache is not None:
            self.pip_cache.mkdir(parents=True, exist_ok=True)
            (self.path / "root" / ".cache" / "pip").mkdir(parents=True, exist_ok=True)
            mounts.append(f"mount --bind {shlex.quote(str(self.pip_cache))} {root}/root/.cache/pip")
        setup = (" && ".join(mounts) + f" && exec chroot {root} /usr/bin/env -i "
                 + " ".join(shlex.quote(f"{k}={v}") for k, v in base.items()) + " "
                 + " ".join(shlex.quote(a) for a in inner))
        unshare = ["unshare", "--mount", "--propagation", "private"] + ([] if network else ["--net"])
        return [*unshare, "/bin/sh", "-c", setup]

    def run(self, argv: list[str] | str, *, network: bool = True, env: dict | None = None,
            timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv, network=network, env=env), timeout=timeout, **kw)
