"""edgec on an NVIDIA GPU against PyTorch, measured in one run.

edgec (TVM backend, target `cuda` = this GPU, fp32 and fp16, schedule rules only: CUDA tuning databases
are not applied) vs PyTorch eager fp32 / fp16, PyTorch fp16 replayed from a CUDA graph, and
torch.compile(mode="max-autotune") fp16, on ResNet-18-224 and MobileNetV2-224 (torchvision-shaped,
1000 classes, random weights, seed 0), batch 1 and 16. Every runner gets the same input, already on the
GPU; a call is timed until the device is done (edgec: `Module.bind`; PyTorch: torch.cuda.synchronize).
Calls are interleaved in blocks, round-robin; the table shows medians. Errors are against PyTorch fp32
on the CPU (exact fp32: cuDNN's defaults run fp32 convs in TF32 on the GPU).

    python benchmarks/gpu_peers.py                               # full table (needs an NVIDIA GPU)
    python benchmarks/gpu_peers.py --models resnet18 --batches 1 --no-torch-compile
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_peers import export, measure  # noqa: E402 (benchmarks/ is not a package)

COLUMNS = ("edgec fp32", "edgec fp16", "eager fp32", "eager fp16", "eager fp16 + CUDA graph",
           "torch.compile fp16")


def edgec_runners(onnx_path: Path, x: np.ndarray, artifacts: Path) -> tuple[dict, dict, dict]:
    """(name -> timed call, name -> output on x, notes): edgec fp32 and fp16 compiled for this GPU, or
    taken from `artifacts` when an earlier run (or a cross-compile: `edgec compile --target cuda-sm_90`)
    left them there."""
    import edgec.runtime as rt
    from edgec.compiler import compile_model

    calls, outputs, notes = {}, {}, {}
    for precision in ("fp32", "fp16"):
        artifact = artifacts / f"{onnx_path.stem}_{precision}.edgec"
        notes[f"compile_s_{precision}"] = None
        if not artifact.exists():
            start = time.perf_counter()
            compile_model(onnx_path, "cuda", artifact, backend="tvm", precision=precision)
            notes[f"compile_s_{precision}"] = time.perf_counter() - start
        module = rt.load(str(artifact), device="cuda")
        feeds = {module.inputs[0][0]: x}
        outputs[f"edgec {precision}"] = module.run(feeds)[module.outputs[0][0]]
        calls[f"edgec {precision}"] = module.bind(feeds)
    return calls, outputs, notes


def torch_runners(net, x: np.ndarray, torch_compile: bool) -> tuple[dict, dict, dict]:
    """(name -> timed call, name -> output on x, notes) for PyTorch's ways of running `net` on the GPU."""
    import torch

    gpu = torch.device("cuda")
    x32 = torch.from_numpy(x).to(gpu)
    x16 = x32.half()
    net32 = copy.deepcopy(net).to(gpu).eval()
    net16 = copy.deepcopy(net).half().to(gpu).eval()

    def synced(fn):
        def call():
            with torch.inference_mode():
                out = fn()
            torch.cuda.synchronize()
            return out
        return call

    calls = {"eager fp32": synced(lambda: net32(x32)), "eager fp16": synced(lambda: net16(x16))}
    with torch.inference_mode():
        for _ in range(3):  # cuDNN picks its algorithms before capture
            net16(x16)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            graph_out = net16(x16)

    def replay():
        graph.replay()
        return graph_out

    calls["eager fp16 + CUDA graph"] = synced(replay)
    notes = {}
    if torch_compile:
        compiled = torch.compile(net16, mode="max-autotune")
        start = time.perf_counter()
        for _ in range(3):
            synced(lambda: compiled(x16))()
        notes["torch_compile_s"] = time.perf_counter() - start
        calls["torch.compile fp16"] = synced(lambda: compiled(x16))
    outputs = {name: call().float().cpu().numpy() for name, call in calls.items()}
    return calls, outputs, notes


def _seconds(s: float | None) -> str:
    return "reused" if s is None else f"{s:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenetv2")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=20, help="consecutive timed calls per runner and round")
    parser.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile (minutes per model)")
    parser.add_argument("--artifacts", help="directory of edgec artifacts (NAME_bBATCH_PRECISION.edgec) to reuse; "
                                             "missing ones are compiled into it (default: a temporary one)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")
    import torch

    if not torch.cuda.is_available():
        print("gpu_peers: no CUDA GPU visible to PyTorch; run it on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    columns = [c for c in COLUMNS if not (args.no_torch_compile and c.startswith("torch.compile"))]
    print("| model | batch | " + " | ".join(f"{c} ms" for c in columns)
          + " | edgec fp16 / best PyTorch | edgec compile s (fp32, fp16) | max abs err fp32 | fp16 top-1 agreement |")
    print("|" + "---|" * (len(columns) + 6))
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-gpu-peers-") as tmp:
        for name in args.models.split(","):
            for batch in map(int, args.batches.split(",")):
                net, x, path = export(name, batch, Path(tmp))
                # reused artifacts must come from the same weights: torch's seeded init, checked by this sum
                checksum = float(sum(p.detach().double().sum() for p in net.parameters()))
                with torch.inference_mode():
                    reference = net(torch.from_numpy(x)).numpy()
                calls, outputs, notes = edgec_runners(path, x, Path(args.artifacts or tmp))
                more_calls, more_outputs, more_notes = torch_runners(net, x, not args.no_torch_compile)
                calls.update(more_calls)
                outputs.update(more_outputs)
                notes.update(more_notes)
                p50 = measure(calls, args.rounds, args.block)
                err = {k: float(np.abs(v - reference).max()) for k, v in outputs.items()}
                top1 = {k: float((v.argmax(1) == reference.argmax(1)).mean()) for k, v in outputs.items()}
                best_torch = min(v for k, v in p50.items() if not k.startswith("edgec"))
                row = {"model": name, "batch": batch, "p50_ms": p50, "max_abs_err_vs_pytorch_fp32_cpu": err,
                       "top1_agreement": top1, "edgec_fp16_over_best_pytorch": p50["edgec fp16"] / best_torch,
                       "weights_checksum": checksum, "notes": notes}
                rows.append(row)
                print(f"| {name} | {batch} | " + " | ".join(f"{p50[c]:.3f}" for c in columns)
                      + f" | {row['edgec_fp16_over_best_pytorch']:.2f} | {_seconds(notes['compile_s_fp32'])}, "
                      f"{_seconds(notes['compile_s_fp16'])} | {err['edgec fp32']:.1e} | {top1['edgec fp16']:.0%} |",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
