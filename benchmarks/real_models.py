"""The real-model suite (issue 21): networks from `transformers`' model code (edgec.zoo.real: configs, seeded
random weights, nothing downloaded), each exported with both PyTorch exporters, compiled by edgec on TVM and
ORT, checked against PyTorch, and timed against ONNX Runtime and OpenVINO on the same exported file.

    .venv/bin/python benchmarks/real_models.py                                  # 7 models x 2 exporters
    .venv/bin/python benchmarks/real_models.py --models bert,resnet50 --exporters dynamo --rounds 5
    .venv/bin/python benchmarks/real_models.py --cross aarch64,cuda-sm_90       # also compile for those targets
    .venv/bin/python benchmarks/real_models.py --emulate mobilenet-v2           # ... and run one under qemu
    .venv/bin/python benchmarks/real_models.py --precision bf16 --exporters dynamo  # edgec TVM in bf16

Per model x exporter: export status and seconds; for edgec TVM and edgec ORT (`compile_model(..., "cpu")`):
status, the first line of the error, compile seconds, max relative error vs PyTorch (max abs error / max
|PyTorch|); p50 of edgec TVM, plain ONNX Runtime (an InferenceSession on the exported file, default options)
and OpenVINO (CPU, LATENCY hint, INFERENCE_PRECISION_HINT f32; and at its default precision, named in the
table: bf16 on a host with AVX512_BF16) and the ratios edgec TVM / each. Every runtime is timed in its own
process (benchmarks/peer_timing.py), the processes alternate round by round, and the table shows the median
over rounds of each process's p50. `--precision bf16` compiles edgec TVM in bf16 (edgec ORT stays fp32; compare
with OpenVINO's default, bf16 where the host has AVX512_BF16). `--top-kernels N` adds each TVM build's slowest
kernels, with the rule that scheduled each and its MAC/ns (benchmarks/kernel_profile.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's edgec

from peer_timing import time_peers  # noqa: E402 (benchmarks/, next to this script)

PEERS = ("edgec", "onnxruntime", "openvino-f32", "openvino")


def first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text or type(e).__name__)[:300]


def one_model(name: str, exporter: str, work: Path, args) -> dict:
    import torch

    import edgec.runtime as rt
    from edgec.compiler import compile_model
    from edgec.frontend.export import export_module
    from edgec.metrics.compare import errors
    from edgec.zoo import real

    row: dict = {"model": name, "exporter": exporter}
    module, inputs = real.build(name)
    with torch.no_grad():
        expected = module(*inputs.values()).numpy()
    feeds = {k: v.numpy() for k, v in inputs.items()}
    onnx_path = work / f"{name}.{exporter}.onnx"
    start = time.perf_counter()
    try:
        export_module(module, inputs, onnx_path, exporter=exporter)
        row["export"] = {"status": "ok", "s": round(time.perf_counter() - start, 1)}
    except Exception as e:  # a benchmark records failures and goes on
        row["export"] = {"status": "failed", "error": first_line(e)}
        return row
    del module
    artifacts = {}
    for backend in ("tvm", "ort"):
        artifact = work / f"{name}.{exporter}.{backend}.edgec"
        try:
            result = compile_model(onnx_path, "cpu", artifact, backend=backend,
                                   precision=args.precision if backend == "tvm" else "fp32")
            got = rt.load(artifact).run(feeds)["logits"]
            row[backend] = {"status": "ok", "compile_s": round(result.seconds, 1),
                            "max_rel_err": errors(got, expected).rel_err}
            artifacts[backend] = artifact
        except Exception as e:
            row[backend] = {"status": "failed", "error": first_line(e)}
    for target in args.cross:
        try:
            result = compile_model(onnx_path, target, work / f"{name}.{exporter}.{target}.edgec")
            row[target] = {"status": "ok", "compile_s": round(result.seconds, 1)}
            if target == "aarch64" and name in args.emulate and "tvm" in artifacts:
                from edgec import emulate

                run = emulate.run(work / f"{name}.{exporter}.{target}.edgec", list(feeds.values()), warmup=0,
                                  iters=1, timeout_s=1800)
                x86 = rt.load(artifacts["tvm"]).run(feeds)["logits"]
                row[target]["qemu_max_abs_err_vs_x86"] = float(np.abs(run.outputs[0] - x86).max())
        except Exception as e:
            row[target] = {"status": "failed", "error": first_line(e)}
    if "tvm" in artifacts and args.rounds:
        paths = {"edgec": artifacts["tvm"], "onnxruntime": onnx_path, "openvino-f32": onnx_path,
                 "openvino": onnx_path}
        row["p50_ms"], notes = time_peers(paths, feeds, work, args.rounds, args.iters)
        row["timing_notes"] = notes
        if args.top_kernels:
            from kernel_profile import profile_artifact

            row["top_kernels"] = profile_artifact(artifacts["tvm"], onnx_path, args.top_kernels, runs=3,
                                                  precision=args.precision)
    for path in work.glob(f"{name}.{exporter}.*"):
        path.unlink()
    return row


def cell(entry: dict | None) -> str:
    if not entry:
        return "—"
    if entry["status"] != "ok":
        return f"**failed**: {entry['error'][:120]}"
    err = f", err {entry['max_rel_err']:.1e}" if "max_rel_err" in entry else ""
    return f"ok {entry['compile_s']:.0f} s{err}"


def table(rows: list[dict], cross: list[str], precision: str = "fp32") -> str:
    head = ["model", "exporter", "export", f"edgec TVM {precision}", "edgec ORT", *cross,
            "p50 ms edgec TVM / ORT / OpenVINO f32 / OpenVINO default", "TVM / ORT", "TVM / OpenVINO f32",
            "TVM / OpenVINO default"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        p50 = r.get("p50_ms", {})
        times = " / ".join(f"{p50[p]:.2f}" if p in p50 else "—" for p in PEERS)
        ratio = [f"{p50['edgec'] / p50[p]:.2f}" if "edgec" in p50 and p in p50 else "—"
                 for p in PEERS[1:]]
        precision = r.get("timing_notes", {}).get("openvino")
        if precision and "openvino" in p50:
            ratio[-1] += f" ({precision})"
        export = r["export"]
        exp = f"ok {export['s']:.0f} s" if export["status"] == "ok" else f"**failed**: {export['error'][:120]}"
        extra = []
        for t in cross:
            c = cell(r.get(t))
            if r.get(t, {}).get("qemu_max_abs_err_vs_x86") is not None:
                c += f" (qemu vs x86 {r[t]['qemu_max_abs_err_vs_x86']:.1e})"
            extra.append(c)
        lines.append("| " + " | ".join([r["model"], r["exporter"], exp, cell(r.get("tvm")), cell(r.get("ort")),
                                        *extra, times, *ratio]) + " |")
    return "\n".join(lines)


def main() -> int:
    from edgec.zoo import real

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(real.MODELS),
                        help=f"comma-separated, from {', '.join([*real.MODELS, *real.FAST_MODELS])}")
    parser.add_argument("--exporters", default="torchscript,dynamo")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="edgec TVM's precision")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (0: no timing)")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per process")
    parser.add_argument("--cross", default="", help="also compile for these targets, e.g. aarch64,cuda-sm_90")
    parser.add_argument("--emulate", default="", help="models whose aarch64 build runs under qemu vs x86")
    parser.add_argument("--json", help="also write the rows here (one JSON object per line)")
    parser.add_argument("--top-kernels", type=int, default=0, metavar="N",
                        help="also print each TVM build's N slowest kernels (benchmarks/kernel_profile.py)")
    args = parser.parse_args()
    args.cross = [t for t in args.cross.split(",") if t]
    args.emulate = [m for m in args.emulate.split(",") if m]
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-real-") as tmp:
        for name in args.models.split(","):
            for exporter in args.exporters.split(","):
                row = one_model(name, exporter, Path(tmp), args)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(row) + "\n")
    print(table(rows, args.cross, args.precision))
    for r in rows:
        if r.get("top_kernels"):
            print(f"\n{r['model']} ({r['exporter']}), edgec TVM's top kernels:\n\n{r['top_kernels']}")
    return 0 if all(r.get(b, {}).get("status") == "ok" for r in rows for b in ("tvm", "ort")) else 1


if __name__ == "__main__":
    sys.exit(main())
