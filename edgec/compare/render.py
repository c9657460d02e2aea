"""Write a comparison as compare.json, compare.html and an error-by-layer plot."""

from __future__ import annotations

import html
import json
from pathlib import Path

from edgec.compare.diff import CompareResult
from edgec.files import write_atomic

PLOT = "error_by_layer.png"


def _tolerance(tol: dict) -> str:
    if tol["min_cosine"] is not None:
        return f"{tol['mode'].replace('cosine (', '').rstrip(')')}: diverges below cosine {tol['min_cosine']:g}"
    return f"atol {tol['atol']:g}, rtol {tol['rtol']:g}"


def summary(result: CompareResult) -> str:
    first = result.first_divergent
    t, r = result.test, result.reference
    head = (f"{t['model']} on {t['backend']} ({t['precision']}) vs {r['model']} on {r['backend']}: "
            f"{len(result.tensors)} tensors compared on {result.inputs['samples']} {result.inputs['dataset']} "
            f"sample(s), {_tolerance(result.tolerance)}")
    if first is None:
        return head + "\nall tensors within tolerance"
    return (head + f"\nfirst divergent: tensor '{first.tensor}' from node '{first.node}' (op {first.op}): "
            f"max abs err {first.max_abs_err:.3g}, cosine {first.cosine:.6f}")


def _plot(result: CompareResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tol = result.tolerance
    if tol["min_cosine"] is None:
        values = [max(t.max_abs_err if t.max_abs_err is not None else 1.0, 1e-12) for t in result.tensors]
        bar, ylabel = tol["atol"], "max abs error"
    else:
        values = [max(1.0 - (t.cosine if t.cosine is not None else 0.0), 1e-12) for t in result.tensors]
        bar, ylabel = 1.0 - tol["min_cosine"], "1 - cosine similarity"
    colors = ["tab:red" if t.exceeds else "tab:blue" for t in result.tensors]
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(values)), 4))
    ax.bar(range(len(values)), values, color=colors)
    ax.axhline(bar, color="gray", linestyle="--", label=f"threshold {bar:g}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(values)), [f"{t.op}:{t.tensor}"[:28] for t in result.tensors], rotation=90, fontsize=6)
    ax.set_ylabel(ylabel)
    ax.set_title("error by layer (red: beyond tolerance)")
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png", metadata={"Software": None}))
    plt.close(fig)


def write(result: CompareResult, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    write_atomic(out_dir / "compare.json", lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))
    _plot(result, out_dir / PLOT)
    esc = html.escape
    rows = "".join(
        f"<tr{' class=bad' if t.exceeds else ''}><td>{t.index}</td><td>{esc(t.tensor)}</td><td>{esc(t.node)}</td>"
        f"<td>{esc(t.op)}</td><td>{esc('x'.join(map(str, t.shape)))}</td><td>{t.max_abs_err}</td>"
        f"<td>{t.mean_abs_err}</td><td>{t.cosine}</td></tr>" for t in result.tensors)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>edgec compare</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #bbb;
padding:3px 6px}}tr.bad{{background:#fdd}}</style></head><body><h1>edgec compare</h1>
<pre>{esc(summary(result))}</pre><img src="{PLOT}" alt="error by layer">
<table><tr><th>#</th><th>tensor</th><th>node</th><th>op</th><th>shape</th><th>max abs err</th>
<th>mean abs err</th><th>cosine</th></tr>{rows}</table></body></html>
"""
    write_atomic(out_dir / "compare.html", lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return out_dir
