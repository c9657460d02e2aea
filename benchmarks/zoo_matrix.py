"""The zoo's model x backend x precision matrix: export each trained network, compile it for `--target cpu`
with every edgec backend, run the held-out split through the artifact and compare with PyTorch.

    .venv/bin/python benchmarks/zoo_matrix.py                    # every zoo model, tvm and ort, fp32
    .venv/bin/python benchmarks/zoo_matrix.py resnet18 lstm --backends ort --json out.json

Prints one markdown row per model x backend: accuracy on the artifact (segmentation: pixel accuracy),
top-1 agreement with PyTorch, max |logit difference|, compile seconds; or the error that stopped it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from edgec import runtime  # noqa: E402
from edgec.compiler import compile_model  # noqa: E402
from edgec.errors import EdgecError  # noqa: E402
from edgec.frontend.export import export_onnx  # noqa: E402
from edgec.zoo import registry, train  # noqa: E402


def evaluate(name: str, backend: str, onnx_path: Path, reference: np.ndarray, labels: np.ndarray,
             x: np.ndarray, workdir: Path) -> dict:
    """Compile `onnx_path` with `backend`, run x through it, compare with the PyTorch `reference` outputs."""
    row = {"model": name, "backend": backend, "target": "cpu", "precision": "fp32"}
    try:
        result = compile_model(onnx_path, target="cpu", output=workdir / f"{name}-{backend}.edgec", backend=backend)
        module = runtime.load(result.path)
        outputs = np.concatenate([module(x[i:i + 64])[0] for i in range(0, len(x), 64)])
    except EdgecError as e:
        return dict(row, status="unsupported", note=str(e))
    diff = np.abs(outputs - reference)
    return dict(row, status="ok", accuracy=train.accuracy(outputs, labels),
                top1_agreement=float((outputs.argmax(1) == reference.argmax(1)).mean()),
                max_abs_err=float(diff.max()), compile_s=round(result.seconds, 1),
                lowered=result.manifest["backend_config"].get("lowered", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="zoo names (default: all)")
    parser.add_argument("--backends", default="tvm,ort")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    print("| model | backend | precision | accuracy | top-1 agreement | max abs err | compile s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="edgec-zoo-") as tmp:
        for name in args.models or list(registry.ZOO):
            entry = registry.get(name)
            net = train.load_trained(name, log=None)
            split = entry.load_data()
            reference = train.predict(net, split.x_test)
            onnx_path = export_onnx(net, entry.input_shape, Path(tmp, f"{name}.onnx"),
                                    output_names=entry.output_names)
            for backend in args.backends.split(","):
                row = evaluate(name, backend, onnx_path, reference, split.y_test, split.x_test, Path(tmp))
                rows.append(row)
                if row["status"] == "ok":
                    print(f"| {name} | {backend} | fp32 | {row['accuracy']:.4f} | {row['top1_agreement']:.4f} | "
                          f"{row['max_abs_err']:.1e} | {row['compile_s']} |", flush=True)
                else:
                    print(f"| {name} | {backend} | fp32 | {row['status']}: {row['note']} | | | |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
