"""edgec on the CPU against the tools its users already have, measured in one run.

edgec (TVM backend: schedule rules, plus the tuning database shipped in tuning/ for this CPU if
any; `--tuning-db none` for rules only) vs ONNX Runtime vs OpenVINO vs
PyTorch eager, on ResNet-18-224, MobileNetV2-224 (torchvision-shaped, 1000 classes, random
weights), LeNet-5 and, named `zoo:NAME`, the zoo's trained networks at their zoo input size
(`--models zoo` for all classifiers), batch 1 and 8. Every runner gets the same input; their calls are
interleaved in short blocks, round-robin, so machine noise hits all of them alike; the table shows medians and
the edgec/ONNX Runtime ratio (lower is better; 1.0 = parity).

    .venv/bin/python benchmarks/cpu_peers.py                      # full table
    .venv/bin/python benchmarks/cpu_peers.py --models lenet --batches 1 --rounds 50
    .venv/bin/python benchmarks/cpu_peers.py --models zoo --batches 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def networks() -> dict:
    from edgec.zoo import lenet, mobilenet, resnet

    return {
        "resnet18": (lambda: resnet.resnet18(num_classes=1000, width=64), (3, 224, 224)),
        "mobilenetv2": (lambda: mobilenet.mobilenetv2(num_classes=1000, width=1.0, last_channels=1280),
                        (3, 224, 224)),
        "lenet": (lenet.lenet, (1, 28, 28)),
    }


ZOO_SKIPPED = ("detector", "detector-raw")  # variable-size NMS outputs: see benchmarks/zoo_matrix.py


def zoo_models() -> list[str]:
    from edgec.zoo import registry

    return [f"zoo:{name}" for name in registry.ZOO if name not in ZOO_SKIPPED]


def export(name: str, batch: int, workdir: Path):
    import torch

    if name.startswith("zoo:"):
        from edgec.zoo import registry, train

        net = train.load_trained(name[4:], log=None).eval()
        chw = registry.get(name[4:]).input_shape[1:]
    else:
        build, chw = networks()[name]
        torch.manual_seed(0)
        net = build().eval()
    x = torch.rand(batch, *chw)
    path = workdir / f"{name.replace(':', '-')}_b{batch}.onnx"
    torch.onnx.export(net, x, str(path), opset_version=17, dynamo=False, input_names=["input"],
                      output_names=["logits"])
    return net, x.numpy(), path


def runners(net, x: np.ndarray, onnx_path: Path, workdir: Path, tuning_db: str | None = None) -> tuple[dict, dict]:
    """name -> zero-argument callable returning the output; plus notes (compile time, skips)."""
    import onnxruntime as ort
    import torch

    import edgec.runtime as rt
    from edgec.compiler import compile_model

    notes = {}
    artifact = workdir / (onnx_path.stem + ".edgec")
    start = time.perf_counter()
    manifest = compile_model(onnx_path, "cpu", artifact, backend="tvm", tuning_db=tuning_db).manifest
    notes["compile_s"] = time.perf_counter() - start
    notes["kernels_from_db"] = len(manifest["backend_config"].get("tuning", {}).get("kernels_from_db", []))
    model = rt.load(str(artifact), device="cpu")
    name = model.inputs[0][0]
    out = {"edgec": lambda: model.run({name: x})[model.outputs[0][0]]}

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out["onnxruntime"] = lambda: session.run(None, {"input": x})[0]
    try:
        import openvino as ov

        compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        out["openvino"] = lambda: request.infer({0: x})[compiled.output(0)]
    except ImportError as e:
        notes["openvino"] = f"unavailable ({e})"
    tx = torch.from_numpy(x)

    def eager():
        with torch.inference_mode():
            return net(tx).numpy()

    out["pytorch"] = eager
    return out, notes


def measure(fns: dict, rounds: int, block: int) -> dict:
    """Median milliseconds per call.

    Each round runs every runner for `block` consecutive calls (first one dropped): runtimes keep
    their worker threads spinning for a while after a call, so switching runner on every call
    would measure each one fighting the previous one's idle threads.
    """
    samples = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            fns[k]()
            for _ in range(block):
                start = time.perf_counter()
                fns[k]()
                samples[k].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenetv2,lenet")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--tuning-db", help="edgec's tuning database (default: the one shipped in tuning/ for this "
                                             "CPU, if any; 'none': schedule rules only)")
    args = parser.parse_args()
    os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")

    rows = []
    header = ("| model | batch | edgec p50 ms | ONNX Runtime | OpenVINO | PyTorch eager | edgec/ORT "
              "| compile s | max abs err vs ORT |")
    print(header)
    print("|" + "---|" * 9)
    with tempfile.TemporaryDirectory(prefix="edgec-peers-") as tmp:
        names = [m for spec in args.models.split(",") for m in (zoo_models() if spec == "zoo" else [spec])]
        for name in names:
            for batch in map(int, args.batches.split(",")):
                net, x, path = export(name, batch, Path(tmp))
                fns, notes = runners(net, x, path, Path(tmp), args.tuning_db)
                err = float(np.abs(fns["edgec"]() - fns["onnxruntime"]()).max())
                p50 = measure(fns, args.rounds, 5 if name in networks() and name != "lenet" else 50)
                row = {"model": name, "batch": batch, "p50_ms": p50,
                       "ratio_edgec_ort": p50["edgec"] / p50["onnxruntime"], "compile_s": notes["compile_s"],
                       "max_abs_err_vs_ort": err, "notes": notes}
                rows.append(row)
                ov = f"{p50['openvino']:.3f}" if "openvino" in p50 else "n/a"
                print(f"| {name} | {batch} | {p50['edgec']:.3f} | {p50['onnxruntime']:.3f} | {ov} "
                      f"| {p50['pytorch']:.3f} | {row['ratio_edgec_ort']:.2f} | {notes['compile_s']:.1f} "
                      f"| {err:.1e} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
