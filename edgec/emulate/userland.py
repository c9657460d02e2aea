"""A cached arm64 userland in which qemu-user runs the board's Python, numpy and TVM runtime.

Everything is fetched through package clients, once, into the cache directory ($EDGEC_CACHE_DIR/aarch64,
default ~/.cache/edgec/aarch64), and needs no root:
- root/: Debian's arm64 python3.11 and the libraries it loads, from `apt-get download` with a private apt
  state (the host's sources, arm64 indexes) and unpacked with `dpkg -x`;
- site-*/: the aarch64 wheels of apache-tvm, apache-tvm-ffi and numpy from PyPI (`pip download
  --platform`), installed with `pip install --target` and made runtime-only (libtvm_compiler.so removed,
  as on a board), then byte-compiled by one emulated import.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgec.errors import UnsupportedError

PYTHON_VERSION = "3.11"
DEBIAN_PACKAGES = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libexpat1",
                   "zlib1g", "libffi8", "libstdc++6", "libgcc-s1")
WHEEL_PLATFORM = "manylinux_2_28_aarch64"  # Debian 12's glibc 2.36 runs manylinux_2_28 wheels
QEMU = "qemu-aarch64-static"
_TOOLS = {QEMU: "qemu-user-static", "apt-get": "apt", "dpkg": "dpkg"}
_COMPLETE = ".edgec-complete"


class EmulationUnavailable(UnsupportedError):
    """A tool or download that emulation needs is missing; the message says how to get it."""


@dataclass(frozen=True)
class Userland:
    root: Path  # the arm64 filesystem qemu resolves absolute paths in first (-L)
    site: Path  # numpy + runtime-only TVM for the board's Python

    def command(self, cpu: str, *args: str) -> list[str]:
        """argv running the board's Python under qemu-user emulating `cpu`; -S: no host site-packages."""
        return [QEMU, "-L", str(self.root), "-cpu", cpu, str(self.root / f"usr/bin/python{PYTHON_VERSION}"), "-S",
                *args]

    def env(self, *paths: Path, write_bytecode: bool = False) -> dict[str, str]:
        """A clean environment for the board's Python: only `paths` and the site on sys.path."""
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/tmp"),
               "PYTHONPATH": os.pathsep.join(map(str, (*paths, self.site))), "PYTHONNOUSERSITE": "1",
               "TVM_FFI_DISABLE_TORCH_C_DLPACK": "1"}
        if not write_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env


def cache_dir() -> Path:
    base = os.environ.get("EDGEC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "edgec")
    return Path(base) / "aarch64"


def require_tools(*tools: str) -> None:
    """Raise EmulationUnavailable naming the first missing host tool and the Debian package with it."""
    for tool in tools:
        package = _TOOLS[tool]
        if shutil.which(tool) is None:
            raise EmulationUnavailable(f"emulation needs {tool}, which is not on PATH; install it with "
                                       f"`sudo apt-get install {package}` (or `make toolchain-aarch64`)")


def prepare(tvm_version: str, tvm_ffi_version: str, numpy_version: str) -> Userland:
    """The cached userland for these versions, fetched and built on first use."""
    require_tools(QEMU)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        root = _build_once(cache / "root", " ".join(DEBIAN_PACKAGES), lambda tmp: _fetch_debian(cache, tmp))
        pins = (f"apache-tvm=={tvm_version}", f"apache-tvm-ffi=={tvm_ffi_version}", f"numpy=={numpy_version}")
        site_name = f"site-tvm{tvm_version}-ffi{tvm_ffi_version}-numpy{numpy_version}"
        site = _build_once(cache / site_name, " ".join(pins), lambda tmp: _fetch_wheels(cache, tmp, pins, root))
    return Userland(root, site)


@contextmanager
def _locked(path: Path):
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # one builder at a time; released when the file closes
        yield


def _build_once(path: Path, stamp: str, build) -> Path:
    """Return `path`, building it into a temporary sibling and renaming it when its stamp differs."""
    marker = path / _COMPLETE
    if marker.is_file() and marker.read_text() == stamp:
        return path
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        build(tmp)
        (tmp / _COMPLETE).write_text(stamp)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _run(argv: list[str], what: str, offline_hint: bool = True, **kwargs) -> None:
    """Run a fetch/build step; a failure becomes EmulationUnavailable naming the step and its last message."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    except subprocess.TimeoutExpired:
        raise EmulationUnavailable(f"{what} took longer than {kwargs.get('timeout')} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and "is ignored" not in ln]
        detail = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        hint = (f"; emulation needs Debian's mirror and PyPI once, then runs from the cache {cache_dir()}"
                if offline_hint else "")
        raise EmulationUnavailable(f"{what} failed ({detail}){hint}")


def _fetch_debian(cache: Path, root: Path) -> None:
    """Download DEBIAN_PACKAGES for arm64 with a private apt state and unpack them into `root`."""
    require_tools("apt-get", "dpkg")
    apt = cache / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "status").touch()
    options = ["-q", "-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
               "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::State::status={apt / 'status'}",
               "-o", f"Dir::Cache={apt / 'cache'}", "-o", "Debug::NoLocking=1"]
    _run(["apt-get", *options, "update"], "`apt-get update` of Debian's arm64 package index")
    with tempfile.TemporaryDirectory(prefix="edgec-debs-") as debs:
        os.chmod(debs, 0o755)  # apt's unprivileged download user must be able to write here
        _run(["apt-get", *options, "download", *(f"{p}:arm64" for p in DEBIAN_PACKAGES)],
             "`apt-get download` of the arm64 Python userland", cwd=debs)
        for deb in sorted(Path(debs).glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(root)], f"`dpkg -x {deb.name}`", offline_hint=False)


def _fetch_wheels(cache: Path, site: Path, pins: tuple[str, ...], root: Path) -> None:
    """pip-download the aarch64 wheels for `pins` (cached), install them into `site`, keep the runtime only."""
    wheels = cache / "wheels"
    target = ["--only-binary=:all:", "--platform", WHEEL_PLATFORM, "--python-version", PYTHON_VERSION,
              "--implementation", "cp"]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "download", *target, "-d", str(wheels), *pins],
         f"`pip download` of the aarch64 wheels of {', '.join(pins)}")
    _run([*pip, "install", "--no-index", "--find-links", str(wheels), "--no-compile", *target, "--target", str(site),
          *pins], "`pip install --target` of the aarch64 wheels")
    (site / "tvm" / "lib" / "libtvm_compiler.so").unlink()  # what makes `import tvm` runtime-only
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts for the host: unusable on the board
    board = Userland(root, site)
    _run(board.command("max", "-c", "import numpy, tvm.runtime.vm"), "importing numpy and the TVM runtime under "
         f"{QEMU}", offline_hint=False, env=board.env(write_bytecode=True), timeout=600)
