"""The zoo detector on TVM vs ONNX Runtime, NMS in the backend and on the host: p50 on real images.

    .venv/bin/python benchmarks/detector_speed.py [--rounds 6] [--iters 200]

Each artifact is timed in its own process (two runtimes in one process distort each other's thread
pools on 2 cores), the processes alternate round by round, and the table gives the median over rounds
of each process's p50 of `Module.run` on the shapes test images (image i of the run is test image
i mod 20: NMS work depends on how many boxes pass the score threshold), with TVM/ORT ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's edgec

TIMER = """
import json, sys, time
import numpy as np
import edgec.runtime as rt
from edgec.zoo import shapes
m = rt.load(sys.argv[1])
x = shapes.part("test").x[:20]
for i in range(20):
    m.run({"input": x[i % 20:i % 20 + 1]})
t = []
for i in range(int(sys.argv[2])):
    s = time.perf_counter(); m.run({"input": x[i % 20:i % 20 + 1]}); t.append((time.perf_counter() - s) * 1e3)
print(json.dumps(float(np.median(t))))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()
    from edgec.compiler import compile_model
    from edgec.frontend.export import export_onnx, resolve_exportable

    with tempfile.TemporaryDirectory(prefix="edgec-det-") as tmp:
        net, shape, outputs = resolve_exportable("detector")
        onnx_path = export_onnx(net, shape, Path(tmp) / "detector.onnx", output_names=outputs)
        artifacts = {}
        for backend in ("tvm", "ort"):
            for nms in ("auto", "host"):
                name = f"{backend}, NMS {'in the backend' if nms == 'auto' else 'on the host'}"
                artifacts[name] = compile_model(onnx_path, "cpu", Path(tmp) / f"{backend}-{nms}.edgec",
                                                backend=backend, nms=nms).path
        p50s: dict[str, list[float]] = {name: [] for name in artifacts}
        for _ in range(args.rounds):
            for name, path in artifacts.items():
                out = subprocess.run([sys.executable, "-c", TIMER, str(path), str(args.iters)], check=True,
                                     capture_output=True, text=True, cwd=REPO,
                                     env=dict(os.environ, PYTHONPATH=str(REPO)))
                p50s[name].append(json.loads(out.stdout))
    median = {name: statistics.median(v) for name, v in p50s.items()}
    print("| artifact | p50 ms (median of rounds) | rounds | TVM / ORT |\n|---|---|---|---|")
    for name, value in median.items():
        ort = median[name.replace("tvm", "ort")]
        ratio = f"{value / ort:.2f}" if name.startswith("tvm") else ""
        print(f"| {name} | {value:.3f} | {' '.join(f'{v:.3f}' for v in p50s[name])} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
