"""TVM's process settings, applied where edgec first imports TVM (compile, tune, load), never on import.

Threads: TVM sizes its pool to half the logical CPUs on x86, assuming two hyper-threads per core, so
a 2-vCPU machine without SMT ran every kernel on one thread while ONNX Runtime used both
(ResNet-18-224 edgec/ORT 2.2 -> 1.2 with both cores). edgec sets TVM_NUM_THREADS, unless the user
did, to the physical cores this process may run on. tvm_ffi JIT-builds torch glue on import whenever
torch is importable: TVM_FFI_DISABLE_TORCH_C_DLPACK turns that off.

TVM also pins each worker thread to one core, and a parallel loop hands every worker a fixed share
and waits for all of them: while another process holds a worker's core, each parallel kernel waits
for that core even when the caller's core is free. With the shared 2-core host at load 4-5 the zoo
detector's p50 was 3.5 ms pinned, 0.70 ms unpinned (ONNX Runtime, whose threads are not pinned,
0.59 ms). edgec sets TVM_BIND_THREADS=0, unless the user set it, so the OS may move a waiting worker.
"""

from __future__ import annotations

import os
from pathlib import Path


def physical_cores_available() -> int:
    """Distinct physical cores among the CPUs this process may run on (SMT siblings count once)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology.joinpath("physical_package_id").read_text().strip(),
                       topology.joinpath("core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))  # no topology exposed: count the CPU itself
    return max(1, len(cores))


def prepare_tvm() -> None:
    """Call before TVM is first imported (and so before its first parallel kernel); user settings win."""
    os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")
    os.environ.setdefault("TVM_NUM_THREADS", str(physical_cores_available()))
    os.environ.setdefault("TVM_BIND_THREADS", "0")
