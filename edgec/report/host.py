"""A description of the measuring host, recorded in every report."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from edgec import __version__
from edgec.targets import X86_ISA_FLAGS, host_cpu_flags


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[str]:
    """Names of the NVIDIA GPUs nvidia-smi reports (empty without a driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def host_info() -> dict:
    flags = host_cpu_flags()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cpu_features": [f for f in X86_ISA_FLAGS if f in flags],
        "gpus": gpus(),
        "python": platform.python_version(),
        "edgec_version": __version__,
    }
