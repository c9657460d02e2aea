"""Run ONNX's own backend node tests against edgec's ONNX backend; print the pass rate per edgec backend.

    .venv/bin/python benchmarks/onnx_node_tests.py                  # tvm and ort, every CPU node test
    .venv/bin/python benchmarks/onnx_node_tests.py --backends ort -k 'test_(lstm|gru)' --json out.json

Each test builds a one-op model, compiles it with `edgec` for `--target cpu`, runs it through the
runtime and compares with ONNX's expected outputs (ONNX's own tolerances). Only the CPU variants run.
Tests run in a child process that reports each result as it goes: a test that crashes the process
(a native fault in a toolchain) counts as failed and the child restarts after it.
`--shard K/N` runs a fixed 1/N sample (every N-th test from the K-th).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cpu_tests(backend: str, pattern: str | None, shard: tuple[int, int]) -> list[unittest.TestCase]:
    import onnx.backend.test

    from edgec.onnx_backend import BACKENDS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # generating the expected outputs warns about overflowing casts
        builder = onnx.backend.test.BackendTest(BACKENDS[backend], __name__)
        if pattern:
            builder.include(pattern)
        case = builder.test_cases["OnnxBackendNodeModelTest"]
    tests = [t for t in unittest.TestLoader().loadTestsFromTestCase(case) if t.id().endswith("_cpu")]
    return tests[shard[0]::shard[1]]


def _child(backend: str, pattern: str | None, shard: tuple[int, int], start: int) -> None:
    """Run tests[start:], printing one JSON line per test: [index, name, "pass" | "skip" | failure message]."""
    for index, test in enumerate(_cpu_tests(backend, pattern, shard)[start:], start):
        result = unittest.TestResult()
        test.run(result)
        problems = result.failures + result.errors
        message = _last_line(problems[0][1]) if problems else "skip" if result.skipped else "pass"
        print("RESULT " + json.dumps([index, test.id().rsplit(".", 1)[-1], message]), flush=True)


def run_backend(backend: str, pattern: str | None, shard: tuple[int, int]) -> dict:
    """All selected node tests for one edgec backend: counts, pass rate and each failure's last line."""
    total = len(_cpu_tests(backend, pattern, shard))
    results: dict[str, str] = {}
    start, begin = 0, time.perf_counter()
    while start < total:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(start), "--backends", backend,
               "--shard", f"{shard[0]}/{shard[1]}"] + (["-k", pattern] if pattern else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in proc.stdout:
            if line.startswith("RESULT "):
                index, name, message = json.loads(line[len("RESULT "):])
                if message != "skip":  # not matched by -k
                    results[name] = message
                start = index + 1
        if proc.wait() != 0 and start < total:
            results[f"#{start}"] = f"crashed the process (exit {proc.returncode})"
            start += 1
    failures = {k: v for k, v in results.items() if v != "pass"}
    passed = len(results) - len(failures)
    return {"backend": backend, "tests": len(results), "passed": passed,
            "pass_rate": passed / len(results) if results else 0.0,
            "seconds": round(time.perf_counter() - begin, 1), "failures": dict(sorted(failures.items()))}


def _last_line(trace: str) -> str:
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tvm,ort", help="comma-separated edgec backends (default tvm,ort)")
    parser.add_argument("-k", dest="pattern", help="regular expression selecting test names (default: all)")
    parser.add_argument("--shard", default="0/1", help="K/N: run every N-th test starting at the K-th (default 0/1)")
    parser.add_argument("--json", help="also write the results, with every failure's message, to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # internal: run from this test index on
    args = parser.parse_args()
    shard = tuple(int(v) for v in args.shard.split("/"))
    if args.child is not None:
        _child(args.backends, args.pattern, shard, args.child)
        return
    results = []
    for name in args.backends.split(","):
        r = run_backend(name.strip(), args.pattern, shard)
        results.append(r)
        where = f" (shard {args.shard})" if args.shard != "0/1" else ""
        print(f"{r['backend']}: {r['passed']}/{r['tests']} ONNX node tests{where} pass ({100 * r['pass_rate']:.1f}%) "
              f"in {r['seconds']} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
