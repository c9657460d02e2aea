"""Where a model's time goes on edgec's TVM CPU build: the top kernels, the rule that scheduled each, its rate.

    .venv/bin/python benchmarks/kernel_profile.py model.onnx [--top 5] [--runs 5]
    .venv/bin/python benchmarks/kernel_profile.py --real vit-tiny,gpt2     # suite models (edgec.zoo.real)
    .venv/bin/python benchmarks/kernel_profile.py model.onnx --precision bf16

Per kernel: calls per run, ms per run (median of `--runs` instrumented runs, `edgec.runtime.profile`), share of the
run, the rule that scheduled it (the first of `cpu_rules()` that takes the fused PrimFunc: what compile does;
"-" = TVM's default lowering), GMAC (TVM's FLOP estimate of the unscheduled kernel / 2) and MAC/ns, against the
host's fp32 peak: cores x FMA vectors a cycle (2 on x86 AVX2/AVX-512 and NEON) x lanes x GHz (from /proc/cpuinfo).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rules_and_macs(model_path: str, target, precision: str = "fp32") -> dict[str, tuple[str, float]]:
    """{fused kernel name: (rule that schedules it, MACs per call)}, as compile sees the kernels."""
    import tvm
    from tvm.s_tir.analysis import estimate_tir_flops

    from edgec.backends.tvm.schedules.cpu import cpu_rules
    from edgec.backends.tvm.tuning.search.tasks import fused_module

    tvm_target = tvm.target.Target(target.tvm)
    out = {}
    for gvar, func in fused_module(model_path, target, precision=precision).functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        with tvm_target:
            rule = next((type(r).__name__ for r in cpu_rules() if r.apply(func, tvm_target, False) is not None), "-")
        try:
            macs = estimate_tir_flops(tvm.IRModule({"main": func})) / 2
        except Exception:  # symbolic extents: no estimate
            macs = float("nan")
        out[gvar.name_hint] = (rule, macs)
    return out


def peak_macs_per_ns(target) -> float:
    import tvm

    from edgec.backends.tvm.schedules.target_facts import vector_lanes
    from edgec.targets import cpuinfo_field

    lanes = vector_lanes(tvm.target.Target(target.tvm), 32)
    mhz = [float(x) for x in cpuinfo_field("cpu MHz")] or [0.0]
    return len(os.sched_getaffinity(0)) * 2 * lanes * max(mhz) / 1e3


def profile(model_path: str, top: int, runs: int, precision: str = "fp32") -> str:
    """Compile `model_path` for this CPU with TVM and profile it: `profile_artifact`'s table."""
    from edgec.compiler import compile_model

    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "model.edgec"
        compile_model(model_path, "cpu", artifact, backend="tvm", precision=precision)
        return profile_artifact(artifact, model_path, top, runs, precision)


def profile_artifact(artifact, model_path, top: int, runs: int, precision: str = "fp32") -> str:
    """A markdown table of the TVM artifact's `top` slowest kernels; `model_path` is the ONNX it was compiled
    from (the rules and MAC counts are read from its fused kernels)."""
    import edgec.runtime as rt
    from edgec.runtime.bench import make_inputs
    from edgec.runtime.profile import profile_kernels
    from edgec.targets import resolve_target

    target = resolve_target("cpu")
    module = rt.load(artifact)
    rows = profile_kernels(module, make_inputs(module.inputs), runs=runs)
    info = rules_and_macs(str(model_path), target, precision)
    peak = peak_macs_per_ns(target)
    total = sum(k.ms for k in rows)
    lines = [f"{Path(model_path).name}: {total:.2f} ms in kernels per run; nominal peak {peak:.0f} MAC/ns "
             f"({len(os.sched_getaffinity(0))} cores at /proc/cpuinfo's MHz, fp32 FMA; boost clocks exceed it)", "",
             "| kernel | calls | ms | share | rule | GMAC | MAC/ns | % of nominal peak |",
             "|---|---|---|---|---|---|---|---|"]
    for k in rows[:top]:
        rule, macs = info.get(re.sub(r"_prepacked$", "", k.name), ("?", float("nan")))
        rate = macs * k.calls / (k.ms * 1e6) if k.ms and macs == macs else float("nan")
        lines.append(f"| {k.name} | {k.calls} | {k.ms:.3f} | {k.share:.1%} | {rule} | {macs * k.calls / 1e9:.3f} | "
                     f"{rate:.1f} | {rate / peak:.0%} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="an ONNX file")
    parser.add_argument("--real", default="", help="suite models to export and profile, e.g. vit-tiny,gpt2")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    if not args.model and not args.real:
        parser.error("give an ONNX file or --real NAMES")
    paths = [args.model] if args.model else []
    with tempfile.TemporaryDirectory() as tmp:
        for name in filter(None, args.real.split(",")):
            from edgec.frontend.export import export_module
            from edgec.zoo import real

            module, inputs = real.build(name)
            paths.append(str(Path(tmp) / f"{name}.onnx"))
            export_module(module, inputs, paths[-1], exporter="dynamo")
        for path in paths:
            print(profile(path, args.top, args.runs, args.precision), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
