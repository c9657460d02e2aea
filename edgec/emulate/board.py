"""The board side of an emulated run: executed by the aarch64 Python with only numpy, the TVM runtime and
`edgec.runtime` importable (no torch, onnx or compiler), exactly what a board installs.

    python3 board.py MODEL.edgec INPUTS.npz OUTPUTS.npz WARMUP ITERS [TIMED_ROWS]

INPUTS.npz holds the inputs in manifest order (arr_0, arr_1, ...); the outputs of the first call go to
OUTPUTS.npz the same way. The timed calls run on the same inputs, or on their first TIMED_ROWS rows
(outputs of a whole dataset, latency of one sample). Prints one JSON object with the timings.
"""

import time

_start = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import tvm.runtime.vm  # noqa: E402, F401  (what loading a tvm artifact imports: counted as import time)

import edgec.runtime as rt  # noqa: E402
from edgec.runtime.bench import latency_stats, time_calls  # noqa: E402


def peak_rss_mb() -> float:
    """This process's peak RSS (qemu included) from VmHWM: unlike getrusage's ru_maxrss, which keeps the
    high-water mark of the host process that forked and exec'd qemu, it starts afresh at exec."""
    with open("/proc/self/status", encoding="ascii") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib / 1024


def main(artifact: str, inputs: str, outputs: str, warmup: int, iters: int, timed_rows: int = 0) -> dict:
    imported = time.perf_counter()
    module = rt.load(artifact)
    loaded = time.perf_counter()
    with np.load(inputs) as npz:
        feeds = {name: npz[f"arr_{i}"] for i, (name, _, _) in enumerate(module.inputs)}
    np.savez(outputs, *module.run(feeds).values())
    timed = {name: x[:timed_rows] for name, x in feeds.items()} if timed_rows else feeds
    times = time_calls(lambda: module.run(timed), warmup, iters)
    return {"import_s": imported - _start, "load_s": loaded - imported, "latency_ms": latency_stats(times),
            "peak_rss_mb": peak_rss_mb()}


if __name__ == "__main__":
    artifact, inputs, outputs, warmup, iters, *rows = sys.argv[1:]
    print(json.dumps(main(artifact, inputs, outputs, int(warmup), int(iters), int(rows[0]) if rows else 0)))
