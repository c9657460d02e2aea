"""Report rows measured on a board over TVM RPC (`edgec report --rpc-tracker ... --rpc-key ...`).

The board is asked what it is before anything is compiled; then every tvm row whose code it runs (same arch,
CPU features it has) is uploaded, run on the held-out samples and timed on the board's clock.
"""

from __future__ import annotations

import numpy as np

from edgec.errors import EdgecError
from edgec.runtime.remote.info import mismatch, require_info
from edgec.runtime.remote.run import RemoteModule
from edgec.runtime.remote.session import BoardSpec
from edgec.targets import resolve_target


def probe(spec: BoardSpec, targets, backends) -> dict:
    """What the board says about itself (plus its address), refusing a report none of whose rows it runs."""
    board = spec.open()
    try:
        info = dict(require_info(board.info, board.name), address="{}:{}".format(*board.address), name=board.name,
                    device=board.device)
    finally:
        board.close()
    arches = {resolve_target(t).arch for t in targets}
    if "tvm" not in backends or info["arch"] not in arches:
        raise EdgecError(f"{board.name} is {info['arch']} and runs tvm rows only, but this report has no tvm row "
                         f"for {info['arch']} (targets {', '.join(targets)}, backends {', '.join(backends)}); add "
                         f"--targets {'aarch64' if info['arch'] == 'aarch64' else 'x86-64-avx2'} --backends tvm")
    return info


def runs_there(manifest: dict, info: dict) -> bool:
    target = manifest["target"]
    return manifest["backend"] == "tvm" and target.get("device") == "cpu" and mismatch(target, info) is None


def measure(spec: BoardSpec, artifact, x: np.ndarray, warmup: int, iters: int):
    """(first outputs on all of x, latency of one sample, runs/s, note) on a board under the spec's key."""
    board = spec.open()
    with RemoteModule(board, str(artifact)) as module:
        batch = module.manifest["inputs"][0]["shape"][0]
        if isinstance(batch, str):  # a symbolic batch: every sample in one run
            outs = module.run([x])[0]
        else:
            outs = np.concatenate([module.run([x[i:i + 1]])[0] for i in range(len(x))])
        times = np.asarray(module.time([x[:1]], warmup, iters))
    latency = {k: float(np.percentile(times, q)) for k, q in (("p50", 50), ("p90", 90), ("p99", 99))}
    info = board.info
    kind = info["model"] or info["machine"]
    if info["emulated"]:
        kind = "emulated by qemu-user: its latency is not a real board's"
    note = f"measured on {board.name} ({info['arch']}, {kind}); latency timed on the board"
    return outs, latency, 1e3 / float(times.mean()), note
