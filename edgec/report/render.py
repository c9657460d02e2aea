"""Write a report dict as report.json, report.md, report.html and PNG plots."""

from __future__ import annotations

import html
import json
from pathlib import Path

from edgec.files import write_atomic

COLUMNS = ("backend", "target", "precision", "status", "accuracy", "top-1 agree", "max abs err", "p50 ms",
           "p90 ms", "p99 ms", "throughput/s", "artifact", "compile s")
PLOTS = ("latency_vs_accuracy.png", "latency_by_backend.png")


def _fmt(value, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "err":
        return f"{value:.2e}"
    if kind == "bytes":
        return f"{value / 1024:.1f} KiB" if value < 1 << 20 else f"{value / (1 << 20):.2f} MiB"
    if kind == "ms":
        return f"{value:.3f}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def table_rows(report: dict) -> list[list[str]]:
    out = []
    for r in report["rows"]:
        lat = r["latency_ms"] or {}
        out.append([r["backend"], r["target"], r["precision"], r["status"], _fmt(r["accuracy"], "pct"),
                    _fmt(r["top1_agreement"], "pct"), _fmt(r["max_abs_err"], "err"), _fmt(lat.get("p50"), "ms"),
                    _fmt(lat.get("p90"), "ms"), _fmt(lat.get("p99"), "ms"), _fmt(r["throughput_per_s"], "num"),
                    _fmt(r["artifact_bytes"], "bytes"), _fmt(r["compile_s"], "num")])
    return out


def notes(report: dict) -> list[str]:
    return [f"{r['backend']} {r['target']} {r['precision']}: {r['note']}" for r in report["rows"]
            if r["note"] and r["note"] != "reference"]


def markdown(report: dict) -> str:
    host = report["host"]
    lines = [f"# edgec report: {report['model']}", "",
             f"Dataset **{report['dataset']}**, {report['n_eval']} held-out samples; reference "
             f"{report['reference']['framework']} fp32, accuracy {_fmt(report['reference']['accuracy'], 'pct')}. "
             f"Latency: batch 1, one input reused, after warm-up.", "",
             f"Host: {host['cpu']} ({host['cores']} cores; {', '.join(host['cpu_features']) or 'no ISA flags read'}); "
             f"GPUs: {', '.join(host['gpus']) or 'none'}; edgec {report['edgec_version']}.", "",
             *([board_line(report["board"]), ""] if report.get("board") else []),
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    extra = notes(report)
    if extra:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in extra]
    return "\n".join(lines) + "\n"


def board_line(board: dict) -> str:
    """Where the board rows ran: 'Board: board 'rpi4' at 10.0.0.7:9090 (aarch64, Raspberry Pi 4 ...; ...)'."""
    kind = "emulated by qemu-user" if board["emulated"] else board["model"] or board["machine"]
    return (f"Board (TVM RPC): {board['name']} ({board['arch']}, {kind}; CPU features "
            f"{' '.join(board['cpu_features']) or 'none read'}); the rows it ran say so in their notes and in "
            "report.json's ran_on.")


def html_page(report: dict) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in table_rows(report))
    note_items = "".join(f"<li>{esc(n)}</li>" for n in notes(report))
    images = "".join(f'<figure><img src="{p}" alt="{p}"><figcaption>{p}</figcaption></figure>' for p in PLOTS)
    host = report["host"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgec report: {esc(report['model'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}th{{background:#eee}}
figure{{display:inline-block;margin:1em}}img{{max-width:560px}}</style></head><body>
<h1>edgec report: {esc(report['model'])}</h1>
<p>Dataset <b>{esc(report['dataset'])}</b>, {report['n_eval']} held-out samples; reference
{esc(report['reference']['framework'])} fp32, accuracy {_fmt(report['reference']['accuracy'], 'pct')}.
Host: {esc(host['cpu'])}, {host['cores']} cores; GPUs: {esc(', '.join(host['gpus']) or 'none')}.
{esc(board_line(report['board'])) if report.get('board') else ''}</p>
<table><tr>{head}</tr>{body}</table>
<ul>{note_items}</ul>
{images}
</body></html>
"""


def plot(report: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in report["rows"] if r["status"] == "ok" and r["latency_ms"]]
    labels = [f"{r['backend']}\n{r['target']} {r['precision']}" for r in ok]
    p50 = [r["latency_ms"]["p50"] for r in ok]
    paths = [out_dir / name for name in PLOTS]

    fig, ax = plt.subplots(figsize=(6, 4))
    markers = "osD^vP*X"
    for i, (r, label, lat) in enumerate(zip(ok, labels, p50)):
        if r["accuracy"] is not None:
            ax.scatter(lat, 100 * r["accuracy"], s=60, marker=markers[i % len(markers)],
                       label=label.replace("\n", " "))
    if ax.collections:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, batch 1 (ms, log scale)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(f"{report['model']}: latency vs accuracy")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    _save(fig, paths[0])

    fig, ax = plt.subplots(figsize=(6, 4))
    p90 = [r["latency_ms"]["p90"] for r in ok]
    ax.bar(range(len(ok)), p50, color="tab:blue", label="p50")
    ax.errorbar(range(len(ok)), p50, yerr=[[0] * len(ok), [b - a for a, b in zip(p50, p90)]], fmt="none",
                ecolor="black", capsize=4, label="p90")
    ax.set_xticks(range(len(ok)), labels, fontsize=8)
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{report['model']}: latency per backend (batch 1)")
    ax.legend()
    fig.tight_layout()
    _save(fig, paths[1])
    plt.close("all")
    return paths


def _save(fig, path: Path) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png", metadata={"Software": None}))


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """Write every report file into out_dir; returns {kind: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "report.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    text = {"json": json.dumps(report, indent=2) + "\n", "md": markdown(report), "html": html_page(report)}
    for kind, path in files.items():
        write_atomic(path, lambda tmp, content=text[kind]: Path(tmp).write_text(content, encoding="utf-8"))
    for path in plot(report, out_dir):
        files[path.stem] = path
    return files
