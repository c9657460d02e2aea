"""INT8 vs FP32 on the same backend, same run: held-out accuracy and p50 latency ratios.

    .venv/bin/python benchmarks/int8_speed.py [--models lenet,resnet18,mobilenetv2] [--sizes zoo,224]
                                               [--backends ort,tvm] [--iters 200]

Each model is exported from the zoo (trained weights, held-out accuracy) at its zoo size and, with
--sizes 224, as the full-width torchvision-shaped network at 1x3x224x224 (`cpu_peers.networks()`,
random weights: latency only). Both precisions are compiled by edgec for this host (int8: QDQ in the
host's scheme, minmax calibration on 64 digits images) and timed interleaved, in rounds, so drift on
a noisy machine hits both alike; the table gives medians and int8/fp32 ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's edgec, not an installed one

from cpu_peers import export as export_full_width  # noqa: E402

import edgec.runtime as rt  # noqa: E402
from edgec.compiler import compile_model  # noqa: E402
from edgec.errors import EdgecError  # noqa: E402
from edgec.frontend.export import export_onnx, resolve_exportable  # noqa: E402
from edgec.quantize.pipeline import Int8Options  # noqa: E402
from edgec.runtime.bench import time_calls  # noqa: E402
from edgec.zoo import registry  # noqa: E402


def accuracy(module, x: np.ndarray, y: np.ndarray) -> float:
    logits = np.concatenate([module(x[i:i + 64])[0] for i in range(0, len(x), 64)])
    return float((logits.argmax(1) == y).mean())


def interleaved_p50(modules: dict, feeds: dict, iters: int, rounds: int = 5) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in modules}
    for _ in range(rounds):
        for key, module in modules.items():
            times[key] += time_calls(lambda m=module: m.run(feeds), warmup=3, iters=max(1, iters // rounds))
    return {k: float(np.median(v)) for k, v in times.items()}


def measure(name: str, size: str, backend: str, iters: int, tmp: Path) -> dict:
    entry = registry.get(name)
    if size == "zoo":
        net, shape, outputs = resolve_exportable(name)
        onnx_path = export_onnx(net, shape, tmp / f"{name}-{size}.onnx", output_names=outputs)
    else:
        _, x, onnx_path = export_full_width(name, 1, tmp)
        shape = x.shape
    modules, compile_s = {}, {}
    for precision in ("fp32", "int8"):
        result = compile_model(onnx_path, "cpu", tmp / f"{name}-{size}-{precision}.edgec", backend=backend,
                               precision=precision, int8=Int8Options(calib="digits"))
        modules[precision], compile_s[precision] = rt.load(result.path), result.seconds
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    p50 = interleaved_p50(modules, {"input": x}, iters)
    row = {"model": name, "input": "x".join(map(str, shape)), "backend": backend, "fp32_p50_ms": p50["fp32"],
           "int8_p50_ms": p50["int8"], "ratio": p50["int8"] / p50["fp32"], "fp32_acc": None, "int8_acc": None}
    if size == "zoo":
        split = entry.load_data()
        row["fp32_acc"] = accuracy(modules["fp32"], split.x_test, split.y_test)
        row["int8_acc"] = accuracy(modules["int8"], split.x_test, split.y_test)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet,resnet18,mobilenetv2")
    parser.add_argument("--sizes", default="zoo,224")
    parser.add_argument("--backends", default="ort,tvm")
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-int8-bench-") as tmp:
        for name in args.models.split(","):
            for size in args.sizes.split(","):
                if size != "zoo" and name not in ("resnet18", "mobilenetv2"):
                    continue
                for backend in args.backends.split(","):
                    try:
                        rows.append(measure(name, size, backend, args.iters, Path(tmp)))
                    except EdgecError as e:
                        print(f"{name} {size} {backend}: {e}")
    print("| model | input | backend | fp32 acc | int8 acc | fp32 p50 ms | int8 p50 ms | int8/fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        acc = [f"{100 * r[k]:.2f}%" if r[k] is not None else "—" for k in ("fp32_acc", "int8_acc")]
        print(f"| {r['model']} | {r['input']} | {r['backend']} | {acc[0]} | {acc[1]} | {r['fp32_p50_ms']:.3f} | "
              f"{r['int8_p50_ms']:.3f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
