"""edgec on the CPU against the tools its users already have, measured in one run.

edgec (TVM backend: schedule rules, plus the tuning database shipped in tuning/ for this CPU if
any; `--tuning-db none` for rules only) vs ONNX Runtime vs OpenVINO (fp32: INFERENCE_PRECISION_HINT=f32;
and at its default precision, named in the table: bf16 on a CPU with AVX512_BF16) vs PyTorch eager, on
ResNet-18-224, MobileNetV2-224 (torchvision-shaped, 1000 classes, random weights), LeNet-5 and, named
`zoo:NAME`, the zoo's trained networks at their zoo input size (`--models zoo` for all classifiers), batch 1
and 8; edgec in fp32, or `--precision bf16` (AVX512_BF16 dot products: compare with OpenVINO's default).
Every runtime gets the same input and is timed in its own process (benchmarks/peer_timing.py: two runtimes
in one process distort each other's thread pools), the processes alternating round by round; the table
shows the median over rounds of each process's p50, and edgec's ratio to each peer (lower is better).

    .venv/bin/python benchmarks/cpu_peers.py                      # full table
    .venv/bin/python benchmarks/cpu_peers.py --models lenet --batches 1 --rounds 50
    .venv/bin/python benchmarks/cpu_peers.py --models zoo --batches 1
    .venv/bin/python benchmarks/cpu_peers.py --models resnet18 --batches 1 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer_timing import time_peers  # noqa: E402 (benchmarks/, next to this script)


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


def compile_edgec(onnx_path: Path, workdir: Path, tuning_db: str | None = None,
                  precision: str = "fp32") -> tuple[Path, dict]:
    """(artifact, notes: compile seconds, kernels taken from a tuning database)."""
    from edgec.compiler import compile_model

    artifact = workdir / (onnx_path.stem + ".edgec")
    start = time.perf_counter()
    manifest = compile_model(onnx_path, "cpu", artifact, backend="tvm", tuning_db=tuning_db,
                             precision=precision).manifest
    return artifact, {"compile_s": time.perf_counter() - start,
                      "kernels_from_db": len(manifest["backend_config"].get("tuning", {}).get("kernels_from_db", []))}


def max_abs_err_vs_ort(artifact: Path, onnx_path: Path, x: np.ndarray) -> float:
    import onnxruntime as ort

    import edgec.runtime as rt

    model = rt.load(str(artifact), device="cpu")
    got = model.run({model.inputs[0][0]: x})[model.outputs[0][0]]
    expected = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    return float(np.abs(got - expected).max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenetv2,lenet")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=4, help="processes per runtime, alternated")
    parser.add_argument("--iters", type=int, default=30, help="timed calls per process (LeNet: use 300)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--tuning-db", help="edgec's tuning database (default: the one shipped in tuning/ for this "
                                             "CPU, if any; 'none': schedule rules only)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="edgec's precision")
    args = parser.parse_args()
    import torch

    rows = []
    head = ["model", "batch", f"edgec {args.precision} p50 ms", "ONNX Runtime", "OpenVINO f32", "OpenVINO default",
            "PyTorch eager",
            "edgec/ORT", "edgec/OpenVINO f32", "edgec/OpenVINO default", "compile s", "max abs err vs ORT"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    with tempfile.TemporaryDirectory(prefix="edgec-peers-") as tmp:
        work = Path(tmp)
        names = [m for spec in args.models.split(",") for m in (zoo_models() if spec == "zoo" else [spec])]
        for name in names:
            for batch in map(int, args.batches.split(",")):
                net, x, path = export(name, batch, work)
                torch.save(net, work / "net.pt")
                artifact, notes = compile_edgec(path, work, args.tuning_db, args.precision)
                err = max_abs_err_vs_ort(artifact, path, x)
                paths = {"edgec": artifact, "onnxruntime": path, "openvino-f32": path, "openvino": path,
                         "pytorch": work / "net.pt"}
                p50, timing_notes = time_peers(paths, {"input": x}, work, args.rounds, args.iters)
                row = {"model": name, "batch": batch, "precision": args.precision, "p50_ms": p50,
                       "compile_s": notes["compile_s"],
                       "max_abs_err_vs_ort": err, "notes": {**notes, **timing_notes}}
                rows.append(row)

                def ms(peer: str) -> str:
                    return f"{p50[peer]:.3f}" if peer in p50 else timing_notes.get(peer, "n/a")[:40]

                def ratio(peer: str) -> str:
                    return f"{p50['edgec'] / p50[peer]:.2f}" if "edgec" in p50 and peer in p50 else "—"

                default = f"{ms('openvino')} ({timing_notes['openvino']})" if "openvino" in p50 else ms("openvino")
                print(f"| {name} | {batch} | {ms('edgec')} | {ms('onnxruntime')} | {ms('openvino-f32')} | {default} "
                      f"| {ms('pytorch')} | {ratio('onnxruntime')} | {ratio('openvino-f32')} | {ratio('openvino')} "
                      f"| {notes['compile_s']:.1f} | {err:.1e} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
