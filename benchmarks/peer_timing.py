"""Time edgec and its peers on the same inputs, each runtime in its own process (for the benchmark scripts).

Two runtimes in one process distort each other on a small machine: ONNX Runtime's and TVM's thread pools keep
spinning after a call (timed interleaved in one process, ResNet-50 read 1.95x instead of 1.00x). So each peer
runs in a fresh process that loads the model, warms up, and reports the median of `iters` calls; the processes
alternate peer by peer, round by round, and a peer's figure is the median over rounds of its processes' medians.

Peers: `edgec` (an artifact), `onnxruntime` (CPU EP, default options), `openvino-f32` (CPU, LATENCY hint,
INFERENCE_PRECISION_HINT=f32: the fp32 comparison), `openvino` (its default precision: bf16 on a CPU with
AVX512_BF16 or AMX; the process reports what it ran), `pytorch` (eager, inference_mode, a pickled module).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PEERS = ("edgec", "onnxruntime", "openvino-f32", "openvino", "pytorch")

TIMER = r"""
import json, sys, time
import numpy as np
kind, path, feeds_path, iters = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with np.load(feeds_path) as f:
    feeds = {k: f[k] for k in f.files}
note = None
if kind == "edgec":
    import edgec.runtime as rt
    m = rt.load(path)
    call = lambda: m.run(feeds)
elif kind == "onnxruntime":
    import onnxruntime as ort
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    call = lambda: s.run(None, feeds)
elif kind.startswith("openvino"):
    import openvino as ov
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if kind == "openvino-f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    c = ov.Core().compile_model(path, "CPU", config)
    hint = c.get_property("INFERENCE_PRECISION_HINT")
    note = hint.to_string() if hasattr(hint, "to_string") else str(hint)
    r = c.create_infer_request()
    call = lambda: r.infer(feeds)
else:
    import torch
    net = torch.load(path, weights_only=False).eval()
    args = [torch.from_numpy(v) for v in feeds.values()]
    def call():
        with torch.inference_mode():
            net(*args)
for _ in range(3):
    call()
t = []
for _ in range(iters):
    s0 = time.perf_counter(); call(); t.append((time.perf_counter() - s0) * 1e3)
print(json.dumps({"p50_ms": float(np.median(t)), "note": note}))
"""


def time_peers(paths: dict[str, Path], feeds: dict[str, np.ndarray], workdir: Path, rounds: int,
               iters: int) -> tuple[dict[str, float], dict[str, str]]:
    """({peer: median p50 ms}, {peer: note or error}) for the peers in `paths` (peer -> what it loads)."""
    feeds_path = workdir / "feeds.npz"
    np.savez(feeds_path, **feeds)
    p50s: dict[str, list[float]] = {peer: [] for peer in paths}
    notes: dict[str, str] = {}
    env = dict(os.environ, PYTHONPATH=str(REPO), TVM_FFI_DISABLE_TORCH_C_DLPACK="1")
    for _ in range(rounds):
        for peer, path in paths.items():
            out = subprocess.run([sys.executable, "-c", TIMER, peer, str(path), str(feeds_path), str(iters)],
                                 capture_output=True, text=True, cwd=REPO, env=env)
            if out.returncode:
                notes[peer] = "failed: " + (out.stderr.strip().splitlines() or ["?"])[-1][:200]
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
            p50s[peer].append(result["p50_ms"])
            if result["note"]:
                notes[peer] = result["note"]
    return {peer: statistics.median(v) for peer, v in p50s.items() if v}, notes
