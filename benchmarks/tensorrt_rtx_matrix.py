"""The zoo x {fp32, fp16} build table for `edgec compile --backend tensorrt --target rtx` (TensorRT-RTX, no GPU).

    .venv/bin/python benchmarks/tensorrt_rtx_matrix.py                       # every zoo network, 3 builds each
    .venv/bin/python benchmarks/tensorrt_rtx_matrix.py lenet detector --builds 5 --json out.json

Each network is exported once (trained weights) and compiled `--builds` times per precision, in this process.
Prints one markdown row per network x precision: status, plan MiB, artifact KiB, TensorRT's build seconds (first
build), edgec's whole compile seconds, engine layers / ONNX nodes, NMS placement, and how many distinct artifacts
and plans the builds gave (1 = byte-identical rebuilds). `--json` also keeps every build's plan sha256, so two
runs (two processes) can be compared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edgec.compiler import compile_model  # noqa: E402
from edgec.errors import EdgecError  # noqa: E402
from edgec.frontend.export import export_onnx, resolve_exportable  # noqa: E402
from edgec.zoo import registry  # noqa: E402


def builds(name: str, onnx_path: Path, precision: str, count: int, workdir: Path) -> dict:
    row = {"model": name, "precision": precision}
    artifacts, plans, build_s, compile_s = [], [], [], []
    for i in range(count):
        out = workdir / f"{name}-{precision}-{i}.edgec"
        try:
            result = compile_model(onnx_path, "rtx", out, backend="tensorrt", precision=precision)
        except EdgecError as e:
            return dict(row, status="failed", note=" ".join(str(e).split()))
        artifacts.append(hashlib.sha256(out.read_bytes()).hexdigest())
        plans.append(result.manifest["backend_config"]["plan"]["sha256"])
        build_s.append(result.stats["build_s"])
        compile_s.append(round(result.seconds, 2))
    config = result.manifest["backend_config"]
    engine = config["engine"]
    nms = [n["runs_on"] for n in (result.manifest.get("nms") or {}).get("nodes", [])]
    return dict(row, status="ok", plan_mib=round(config["plan"]["bytes"] / 2 ** 20, 2),
                artifact_kib=round(out.stat().st_size / 1024, 1), build_s=build_s, compile_s=compile_s,
                layers=engine["layers"], onnx_nodes=engine["onnx_nodes"], nms=nms, plan_sha256=plans,
                distinct_artifacts=len(set(artifacts)), distinct_plans=len(set(plans)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="zoo names (default: all)")
    parser.add_argument("--builds", type=int, default=3, help="builds per network and precision")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    print("| model | precision | status | plan MiB | artifact KiB | build s | compile s | layers / ONNX nodes | NMS | "
          f"distinct artifacts / plans in {args.builds} builds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="edgec-rtx-") as tmp:
        for name in args.models or list(registry.ZOO):
            net, shape, outputs = resolve_exportable(name)
            onnx_path = export_onnx(net, shape, Path(tmp) / f"{name}.onnx", output_names=outputs)
            for precision in ("fp32", "fp16"):
                r = builds(name, onnx_path, precision, args.builds, Path(tmp))
                rows.append(r)
                if r["status"] != "ok":
                    print(f"| {name} | {precision} | failed: {r['note']} | | | | | | | |", flush=True)
                    continue
                print(f"| {name} | {precision} | ok | {r['plan_mib']} | {r['artifact_kib']} | {r['build_s'][0]} | "
                      f"{r['compile_s'][0]} | {r['layers']} / {r['onnx_nodes']} | {', '.join(r['nms']) or '-'} | "
                      f"{r['distinct_artifacts']} / {r['distinct_plans']} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
