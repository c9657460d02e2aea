"""How much faster integer arithmetic can make a kernel on this CPU: int8 vs fp32 GEMMs built by edgec.

    .venv/bin/python benchmarks/int8_compute.py [--threads 1] [--rounds 7]

Each row is one `[M, K] x [K, N]` matmul with constant weights, compiled through edgec's TVM CPU
pipeline twice: fp32, and u8 x s8 -> int32 (the integer kernels an int8 artifact runs, tensorized
with the CPU's dot-product instruction: vpdpbusd with VNNI, else vpmaddubsw + vpmaddwd). The
shapes are the zoo ResNet-18's convolutions as GEMMs (pixels x 9*C_in x C_out, 64 px input) and
the full-width 224 px ones, so the table says which layers integer compute can speed up at all:
small cache-resident layers are bound by the arithmetic, large ones by memory, where int8's 4x
smaller operands pay even when its arithmetic does not. Timed interleaved, medians of rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = [  # (label, M, K, N)
    ("zoo stage 1 conv 3x3 16->16 @16x16", 256, 144, 16),
    ("zoo stage 2 conv 3x3 32->32 @8x8", 64, 288, 32),
    ("zoo stage 3 conv 3x3 64->64 @4x4", 16, 576, 64),
    ("zoo stage 4 conv 3x3 128->128 @2x2", 4, 1152, 128),
    ("224 stage 1 conv 3x3 64->64 @56x56", 3136, 576, 64),
    ("224 stage 3 conv 3x3 256->256 @14x14", 196, 2304, 256),
    ("compute-bound 512x1024x64 (L2-resident)", 512, 1024, 64),
]


def build(m: int, k: int, n: int, integer: bool):
    """A compiled VM and its input for `x @ W` with W a constant, through edgec's CPU pipeline."""
    import tvm
    from tvm import relax

    from edgec.backends.tvm.pipelines.cpu import cpu_pipeline
    from edgec.backends.tvm.pipelines.tir import tir_pipeline
    from edgec.targets import resolve_target

    rng = np.random.default_rng(0)
    if integer:  # 7-bit weights: what edgec's int8 scheme gives hosts whose dot product adds pairs in int16
        x = rng.integers(0, 256, (m, k), dtype=np.uint8)
        w = rng.integers(-64, 65, (k, n), dtype=np.int8)
    else:
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((k, n), dtype=np.float32)
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType((m, k), str(x.dtype)))
    with bb.function("main", [xv]):
        with bb.dataflow():
            out = bb.emit(relax.op.matmul(xv, relax.const(w), out_dtype="int32" if integer else "float32"))
            bb.emit_output(out)
        bb.emit_func_output(out)
    target = tvm.target.Target(resolve_target("cpu").tvm)
    executable = tvm.compile(bb.get(), target=target, relax_pipeline=cpu_pipeline(target),
                             tir_pipeline=tir_pipeline("llvm"))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    reference = x.astype(np.int64) @ w.astype(np.int64) if integer else x.astype(np.float64) @ w.astype(np.float64)
    return vm, tvm.runtime.tensor(x), reference


def time_us(vm, x, number: int) -> float:
    import tvm

    return vm.time_evaluator("main", tvm.cpu(), number=number, repeat=1)(x).mean * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="TVM threads (default 1: the arithmetic alone)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import tvm

    from edgec.backends.tvm.schedules.cpu.int8_intrinsics import dot_product_for
    from edgec.targets import resolve_target

    dot = dot_product_for(tvm.target.Target(resolve_target("cpu").tvm))
    print(f"dot product: {dot.name if dot else 'none (int32 vector code)'}, TVM threads: {args.threads}")
    print("| GEMM (M x K x N) | MACs | fp32 us | int8 us | fp32 MAC/ns | int8 MAC/ns | int8/fp32 |")
    print("|---|---|---|---|---|---|---|")
    for label, m, k, n in SHAPES:
        fp32, x32, reference32 = build(m, k, n, integer=False)
        int8, x8, reference8 = build(m, k, n, integer=True)
        if not np.array_equal(int8["main"](x8).numpy(), reference8):
            raise SystemExit(f"{label}: the int8 kernel's result differs from numpy's")
        if not np.allclose(fp32["main"](x32).numpy(), reference32, rtol=1e-4, atol=1e-3):
            raise SystemExit(f"{label}: the fp32 kernel's result differs from numpy's")
        macs = m * k * n
        number = max(1, int(2e6 // macs))  # calls per measurement: tens of microseconds for the small GEMMs
        times = {"fp32": [], "int8": []}
        for _ in range(args.rounds):
            times["fp32"].append(time_us(fp32, x32, number))
            times["int8"].append(time_us(int8, x8, number))
        t32, t8 = statistics.median(times["fp32"]), statistics.median(times["int8"])
        print(f"| {label}: {m}x{k}x{n} | {macs / 1e6:.2f}M | {t32:.1f} | {t8:.1f} | {macs / t32 / 1e3:.1f} | "
              f"{macs / t8 / 1e3:.1f} | {t8 / t32:.2f} |")


if __name__ == "__main__":
    main()
