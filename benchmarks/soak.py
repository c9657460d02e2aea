"""Soak test: one loaded module run many times, sequentially and from threads, watching RSS.

    .venv/bin/python benchmarks/soak.py                       # LeNet, both backends, 10,000 runs + 8 threads
    .venv/bin/python benchmarks/soak.py model.edgec --runs 2000 --json

Each artifact is soaked in a fresh process that imports only edgec.runtime. RSS (psutil) is taken
after a warm-up and again after all runs; growth over --max-growth (5%) fails (exit 1). The
threaded phase also checks every result against the sequential reference, since
edgec.runtime.Module serialises calls with a lock and claims thread safety.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

import edgec.runtime as rt
from edgec.runtime.bench import make_inputs


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / (1 << 20)


def soak(artifact: str | Path, runs: int = 10_000, threads: int = 8, warmup: int = 500) -> dict:
    """Run `artifact` `runs` times in one thread, then `runs` times spread over `threads` threads."""
    module = rt.load(artifact)
    feeds = make_inputs(module.inputs, batch=None, seed=0)
    reference = module.run(feeds)
    for _ in range(warmup):
        module.run(feeds)
    after_warmup = rss_mb()
    start = time.perf_counter()
    for _ in range(runs):
        module.run(feeds)
    sequential_s = time.perf_counter() - start
    after_sequential = rss_mb()

    def worker(n: int) -> int:
        bad = 0
        for _ in range(n):
            out = module.run(feeds)
            bad += any(not np.array_equal(out[k], reference[k]) for k in reference)
        return bad

    share = [runs // threads + (i < runs % threads) for i in range(threads)]
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        mismatches = sum(pool.map(worker, share))
    threaded_s = time.perf_counter() - start
    at_end = rss_mb()
    return {"artifact": str(artifact), "backend": module.backend, "runs": runs, "threads": threads,
            "warmup": warmup, "rss_mb": {"after_warmup": round(after_warmup, 2),
                                         "after_sequential": round(after_sequential, 2), "at_end": round(at_end, 2)},
            "growth_pct": round(100 * (at_end - after_warmup) / after_warmup, 3),
            "sequential_runs_per_s": round(runs / sequential_s, 1), "threaded_runs_per_s": round(runs / threaded_s, 1),
            "threaded_mismatches": mismatches}


def _lenet_artifacts(out: Path) -> list[Path]:
    from edgec.compiler import compile_model
    from edgec.frontend.export import export_onnx, resolve_exportable

    net, shape, outputs = resolve_exportable("lenet")
    onnx_path = export_onnx(net, shape, out / "lenet.onnx", output_names=outputs)
    return [compile_model(onnx_path, "cpu", out / f"lenet-{b}.edgec", backend=b).path for b in ("tvm", "ort")]


def _soak_in_child(artifact: Path, args) -> dict:
    """Soak in a fresh interpreter that imports only the runtime, so RSS is the runtime's alone."""
    cmd = [sys.executable, __file__, str(artifact), "--in-process", "--json", "--runs", str(args.runs),
           "--threads", str(args.threads), "--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"soak of {artifact} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="*", help=".edgec files (default: LeNet compiled for tvm and ort)")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--max-growth", type=float, default=5.0, help="allowed RSS growth, percent")
    parser.add_argument("--json", action="store_true", help="print one JSON object per artifact")
    parser.add_argument("--in-process", action="store_true", help="soak here instead of in a fresh child process")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgec-soak-") as tmp:
        artifacts = args.artifacts or _lenet_artifacts(Path(tmp))
        results = [soak(a, args.runs, args.threads, args.warmup) if args.in_process else _soak_in_child(a, args)
                   for a in artifacts]
    failed = False
    for r in results:
        r["ok"] = r["growth_pct"] < args.max_growth and r["threaded_mismatches"] == 0
        failed |= not r["ok"]
        if args.json:
            print(json.dumps(r))
            continue
        rss = r["rss_mb"]
        print(f"{Path(r['artifact']).name} ({r['backend']}): {r['runs']} runs + {r['runs']} over {r['threads']} "
              f"threads; RSS {rss['after_warmup']:.1f} MiB after warm-up, {rss['after_sequential']:.1f} after the "
              f"sequential runs, {rss['at_end']:.1f} at the end: {r['growth_pct']:+.2f}% "
              f"({'ok' if r['ok'] else 'FAIL'}, limit {args.max_growth}%); {r['sequential_runs_per_s']:.0f} runs/s "
              f"sequential, {r['threaded_runs_per_s']:.0f} runs/s threaded, {r['threaded_mismatches']} mismatches")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
