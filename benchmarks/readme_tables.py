"""Regenerate the README's tables from runs, so they cannot go stale.

    .venv/bin/python benchmarks/readme_tables.py            # runs the report, rewrites README.md's tables
    .venv/bin/python benchmarks/readme_tables.py --check    # exit 1 if README.md's zoo table is stale

Sections between `<!-- readme_tables: NAME -->` and `<!-- /readme_tables -->` markers are replaced:
- `demo`: `edgec report lenet --targets cpu --precisions fp32,int8 --dataset digits` (what `make demo`
  runs, plus the int8 rows), with the host and date it ran on;
- `zoo`: every zoo network's held-out metric from its committed training run (`edgec zoo list`).
Every other table in the README names the benchmark script and command that produced it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's edgec, not an installed one

from edgec.report.render import COLUMNS, table_rows  # noqa: E402

README = REPO / "README.md"
DEMO_COMMAND = ["report", "lenet", "--targets", "cpu", "--precisions", "fp32,int8", "--dataset", "digits"]


def demo_section() -> str:
    """The demo report's table, from a run now."""
    import json

    with tempfile.TemporaryDirectory(prefix="edgec-readme-") as tmp:
        subprocess.run([sys.executable, "-m", "edgec.cli", *DEMO_COMMAND, "-o", tmp], check=True, cwd=REPO,
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
        report = json.loads(Path(tmp, "report.json").read_text())
    host = report["host"]
    features = set(host["cpu_features"])
    isa = "AVX-512" + (" + VNNI" if "avx512_vnni" in features else "") if "avx512f" in features else \
        "AVX2, no AVX-512" if "avx2" in features else "no AVX2"
    lines = [f"Command: `edgec {' '.join(DEMO_COMMAND)} -o DIR` (`make demo` runs the fp32 rows); "
             f"{host['cpu']} ({isa}), {host['cores']} cores, GPUs: {', '.join(host['gpus']) or 'none'}; "
             f"{datetime.date.today().isoformat()}. Latency: batch 1, p50/p90/p99 of 100 runs after 10 warm-up "
             "runs; compile s: model load to artifact written, toolchain imports excluded.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    return "\n".join(lines)


def zoo_section() -> str:
    """The zoo networks and their committed held-out metrics."""
    from edgec.cli import _held_out_metric
    from edgec.zoo.registry import ZOO
    from edgec.zoo.train import cached_metrics

    lines = ["| name | input | dataset | held-out (PyTorch) | description |", "|---|---|---|---|---|"]
    for name, entry in ZOO.items():
        metric = _held_out_metric(entry.task, cached_metrics(name) or {})
        lines.append(f"| `{name}` | {'x'.join(map(str, entry.input_shape))} | {entry.dataset} | {metric} | "
                     f"{entry.description} |")
    return "\n".join(lines)


SECTIONS = {"demo": demo_section, "zoo": zoo_section}


def replace(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- readme_tables: {name} -->\n)(?:(?!<!-- /readme_tables -->).*\n)*"
                         rf"(<!-- /readme_tables -->)")  # the body: whole lines, up to its own closing marker
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- readme_tables: {name} --> section")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text, count=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check the sections that need no run (zoo)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: demo, zoo")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    if args.check:
        fresh = replace(text, "zoo", zoo_section())
        if fresh != text:
            print("README.md's zoo table is stale: run benchmarks/readme_tables.py --sections zoo", file=sys.stderr)
            return 1
        return 0
    for name in args.sections.split(","):
        text = replace(text, name, SECTIONS[name]())
    README.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
