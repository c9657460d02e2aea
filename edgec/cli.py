"""The `edgec` command line: a thin shell over the library (frontend, passes, compiler, runtime, report).

Failures print one `edgec: error: ...` line on stderr and exit 2 (bad usage or input) or 1 (internal);
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

import click

from edgec import __version__
from edgec.errors import EdgecError

BACKENDS = ("tvm", "ort", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


def _console():
    from rich.console import Console

    return Console()


@contextmanager
def _progress(enabled: bool, total: int | None, description: str):
    """A rich progress bar on a TTY (stderr); yields advance(message=None) callables, no-op otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield lambda message=None: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(message=None):
            bar.update(task, advance=1, description=message or description)

        yield advance


def _split_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise EdgecError(f"{option} '{value}': expected a comma-separated list")
    return items


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgec")
@click.option("--debug", is_flag=True, help="Show Python tracebacks on errors.")
def cli(debug: bool) -> None:
    """edgec: compile ONNX models for CPUs, CUDA GPUs and embedded boards, with measured reports."""


@cli.command()
@click.argument("model")
@click.option("--input-shape", "input_shape", metavar="DIMS", help="Export shape, e.g. 1x1x28x28.")
@click.option("--opset", default=17, show_default=True, type=int, help="ONNX opset to export.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx file.")
def export(model: str, input_shape: str | None, opset: int, output: str) -> None:
    """Export a zoo network (trained) or MODULE:CALLABLE returning a torch.nn.Module to ONNX."""
    from edgec.frontend.export import export_onnx, resolve_exportable
    from edgec.frontend.shapes import parse_dims

    net, default_shape, outputs = resolve_exportable(model)
    shape = parse_dims(input_shape) if input_shape else default_shape
    if shape is None:
        raise EdgecError(f"'{model}' has no default input shape; pass --input-shape, e.g. 1x3x224x224")
    path = export_onnx(net, shape, output, opset=opset, output_names=outputs)
    click.echo(f"wrote {path} ({model}, input {'x'.join(map(str, shape))}, opset {opset})")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Optimized .onnx file.")
@click.option("--passes", help="Comma-separated pass names (default: the standard pipeline).")
@click.option("--no-validate", is_flag=True, help="Skip the numeric check after each pass.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-pass report as JSON.")
def optimize(model: str, output: str, passes: str | None, no_validate: bool, as_json: bool) -> None:
    """Run graph passes over MODEL and write the optimized ONNX."""
    import onnx

    from edgec.files import write_atomic
    from edgec.frontend.loader import load_model
    from edgec.passes import DEFAULT_PIPELINE, PassContext, run_pipeline

    names = _split_list(passes, "--passes") if passes else list(DEFAULT_PIPELINE)
    graph = load_model(model)
    graph, records = run_pipeline(graph, names, PassContext(model_path=model, validate=not no_validate))
    write_atomic(output, lambda tmp: onnx.save_model(graph, tmp))
    if as_json:
        _echo_json({"model": model, "output": output, "passes": [r.to_json() for r in records]})
        return
    from rich.table import Table

    table = Table(title=f"{model} -> {output}")
    for column in ("pass", "nodes before", "nodes after", "ms"):
        table.add_column(column, justify="right" if column != "pass" else "left")
    for r in records:
        table.add_row(r.name, str(r.nodes_before), str(r.nodes_after), f"{1e3 * r.seconds:.1f}")
    _console().print(table)


@cli.command(name="compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", required=True, help="cpu, x86-64-avx2, aarch64, cuda-sm_XX, rtx, ... (see README's "
                                              "targets table).")
@click.option("--backend", default="tvm", show_default=True, type=click.Choice((*BACKENDS, "auto")),
              help="auto: compile every backend that can, verify and time each here, keep the fastest.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(PRECISIONS))
@click.option("--calib", help="int8 calibration data: digits (its training split) or DATA.npz (array x).")
@click.option("--calib-method", default="minmax", show_default=True,
              type=click.Choice(("minmax", "percentile", "entropy")))
@click.option("--calib-samples", default=64, show_default=True, type=int, help="Calibration samples to use.")
@click.option("--max-accuracy-drop", type=float, metavar="POINTS",
              help="int8: keep the most sensitive layers in float until top-1 drops at most this much, measured "
                   "with this backend on validation samples (digits: the end of its training split; DATA.npz: its "
                   "last quarter, or --validation-data).")
@click.option("--validation-data", type=click.Path(dir_okay=False), metavar="DATA.npz",
              help="--max-accuracy-drop: labelled samples (arrays x, y) to measure the drop on.")
@click.option("--tuning-db", type=click.Path(file_okay=False),
              help="Tuning database directory (tvm: from `edgec tune`, default the one shipped in tuning/ for the "
                   "target if any, 'none' for rules only; tensorrt: keeps its timing cache there).")
@click.option("--arch", metavar="sm_XX", help="GPU architecture for --target cuda on a machine without that GPU.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]DIMS",
              help="Fix an input's shape, e.g. input=1x1x28x28 (repeatable).")
@click.option("--verify-data", metavar="digits|DATA.npz",
              help="--backend auto: check candidates on this data's first 8 samples (default: the calibration data, "
                   "else digits' held-out images when the input takes them).")
@click.option("--nms", default="auto", show_default=True, type=click.Choice(("auto", "host")),
              help="NonMaxSuppression: in the backend where it can (auto) or always in the runtime (host).")
@click.option("--weightless", is_flag=True,
              help="tensorrt: a weight-stripped plan, refitted at load from the ONNX weights the artifact carries "
                   "(TensorRT-RTX: needs a GPU at build time).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .edgec artifact.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def compile_cmd(model, target, backend, precision, calib, calib_method, calib_samples, max_accuracy_drop,
                validation_data, tuning_db, arch, input_shapes, verify_data, nms, weightless, output, as_json) -> None:
    """Compile MODEL (ONNX) for TARGET into one .edgec artifact."""
    from edgec.compiler import compile_model
    from edgec.errors import UnsupportedError
    from edgec.frontend.shapes import parse_input_shapes
    from edgec.quantize.pipeline import Int8Options
    from edgec.targets import cuda_target_name

    if (calib or max_accuracy_drop is not None or validation_data) and precision != "int8":
        raise EdgecError("--calib, --max-accuracy-drop and --validation-data are only used with --precision int8")
    int8 = Int8Options(calib, calib_method, calib_samples, max_accuracy_drop, validation_data)
    if tuning_db and backend == "ort":
        raise UnsupportedError("--tuning-db: backend 'ort' has no tuning database; use it with --backend tvm "
                               "(databases from `edgec tune`) or tensorrt (its timing cache)")
    target = cuda_target_name(target, arch)
    shapes = parse_input_shapes(input_shapes)
    if verify_data and backend != "auto":
        raise EdgecError("--verify-data is only used with --backend auto")
    if backend == "auto":
        from edgec.autoselect import compile_auto

        if weightless:
            raise EdgecError("--weightless is only used with --backend tensorrt")

        result = compile_auto(model, target, output, precision=precision, input_shapes=shapes, verify_data=verify_data,
                              int8=int8, tuning_db=tuning_db, nms=nms)
    else:
        result = compile_model(model, target, output, backend=backend, precision=precision, input_shapes=shapes,
                               int8=int8, tuning_db=tuning_db, nms=nms, weightless=weightless)
    if as_json:
        _echo_json(result.manifest)
        return
    size = result.path.stat().st_size
    for name, record in result.manifest.get("backend_selection", {}).get("candidates", {}).items():
        measured = f"p50 {record['p50_ms']:.3f} ms" if "p50_ms" in record else record["error"]
        click.echo(f"  {name}: {record['verdict']}, {measured}")
    built = f", engine built in {result.stats['build_s']:.2f} s" if "build_s" in result.stats else ""
    click.echo(f"wrote {result.path} ({result.manifest['backend']}, target {target}, {precision}, "
               f"{size / 1024:.1f} KiB) in {result.seconds:.1f} s{built}")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", required=True, help="A target this host runs: cpu, x86-64-avx2, ...")
@click.option("--trials", default=64, show_default=True, type=int,
              help="Candidate schedules to measure, in all (MetaSchedule spreads them over the kernels).")
@click.option("--tuning-db", required=True, type=click.Path(file_okay=False),
              help="Database directory: created if missing; kernels already in it are skipped.")
@click.option("--backend", default="tvm", show_default=True, type=click.Choice(("tvm",)))
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]DIMS",
              help="Fix an input's shape, as for compile (symbolic shapes cannot be tuned).")
@click.option("--json", "as_json", is_flag=True, help="Print the tuning report as JSON.")
def tune(model, target, trials, tuning_db, backend, input_shapes, as_json) -> None:
    """Tune MODEL's kernels for TARGET with MetaSchedule; `compile --tuning-db` then uses the winners."""
    from edgec.backends.tvm.tuning.search.tuner import tune_model
    from edgec.frontend.shapes import parse_input_shapes

    report = tune_model(model, target, trials, tuning_db, parse_input_shapes(input_shapes),
                        log=lambda line: click.echo(line, err=True))
    if as_json:
        _echo_json(report.to_json())
        return
    for k in report.tuned:
        faster = k["best_ms"] is not None and k["rules_ms"] is not None and k["best_ms"] < k["rules_ms"]
        click.echo(f"  {k['task']}: rules {k['rules_ms']} ms, tuned {k['best_ms']} ms ({k['trials']} trials)"
                   + (" -> database" if faster else " -> rules"))
    click.echo(f"tuned {len(report.tuned)} of {report.kernels} kernels ({len(report.already_tuned)} already in "
               f"{report.database}) in {report.seconds:.1f} s")


@cli.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--warmup", default=10, show_default=True, type=int)
@click.option("--iters", default=100, show_default=True, type=int)
@click.option("--batch", type=int, help="Batch size for a symbolic batch dimension (default 1).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (no progress bar).")
@click.option("--emulate", is_flag=True,
              help="Run an aarch64 artifact here under qemu-user (its latency is emulated, not the board's).")
@click.option("--reference", type=click.Path(dir_okay=False),
              help="With --emulate: a host build of the same model; fail if outputs differ by more than 1e-4.")
def bench(artifact, device, warmup, iters, batch, as_json, emulate, reference) -> None:
    """Measure an artifact's latency on random inputs (p50/p90/p99, throughput, peak RSS)."""
    import edgec.runtime as rt
    from edgec.runtime.bench import benchmark

    if batch is not None and batch < 1:
        raise EdgecError(f"--batch {batch}: must be >= 1")
    if reference and not emulate:
        raise EdgecError("--reference is only used with --emulate")
    if emulate:
        from edgec import emulate as emu

        result = emu.bench(artifact, reference, warmup=warmup, iters=iters, batch=batch, device=device)
        if as_json:
            _echo_json(result)
        else:
            click.echo(emu.summary(result))
        emu.check(result)  # exit 1 when the outputs differ from --reference's
        return
    module = rt.load(artifact, device=device)
    with _progress(not as_json, iters, f"bench {Path(artifact).name}") as advance:
        result = benchmark(module, warmup=warmup, iters=iters, batch=batch, progress=advance)
    if as_json:
        _echo_json(result)
        return
    lat = result["latency_ms"]
    click.echo(f"{artifact}: {result['backend']} {result['target']} {result['precision']} on {device}, "
               f"batch {result['batch']}, {iters} iters")
    click.echo("latency ms: " + "  ".join(f"{k} {lat[k]:.3f}" for k in ("mean", "p50", "p90", "p99", "min", "max")))
    click.echo(f"throughput {result['throughput_per_s']:.1f}/s, peak RSS {result['peak_rss_mb']:.0f} MiB")


@cli.command()
@click.argument("model")
@click.option("--targets", default="cpu", show_default=True, help="Comma-separated targets.")
@click.option("--precisions", default="fp32", show_default=True, help="Comma-separated precisions.")
@click.option("--backends", default="tvm,ort", show_default=True, help="Comma-separated backends.")
@click.option("--dataset", default="digits", show_default=True, help="digits, shapes or DATA.npz.")
@click.option("--iters", default=100, show_default=True, type=int, help="Timed runs per row.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Report directory.")
def report(model, targets, precisions, backends, dataset, iters, out_dir) -> None:
    """Compile MODEL (zoo name or .onnx) for every target x precision x backend and measure it."""
    from edgec.report.evaluate import evaluate
    from edgec.report.render import markdown, write_report

    target_list = _split_list(targets, "--targets")
    precision_list = _split_list(precisions, "--precisions")
    backend_list = _split_list(backends, "--backends")
    for p in precision_list:
        if p not in PRECISIONS:
            raise EdgecError(f"--precisions: unknown precision '{p}'; choose from {', '.join(PRECISIONS)}")
    for b in backend_list:
        if b not in BACKENDS:
            raise EdgecError(f"--backends: unknown backend '{b}'; choose from {', '.join(BACKENDS)}")
    total = 1 + len(target_list) * len(precision_list) * len(backend_list)
    with _progress(True, total, "report") as advance:
        result = evaluate(model, target_list, precision_list, dataset, Path(out_dir), backend_list,
                          iters=iters, progress=advance)
    files = write_report(result, Path(out_dir))
    click.echo(markdown(result))
    click.echo(f"report written to {files['md'].parent}/ (report.json, report.md, report.html, plots)")
    failed = [r for r in result["rows"] if r["status"] == "failed"]
    if failed:
        raise EdgecError(f"{len(failed)} report row(s) failed: "
                         + "; ".join(f"{r['backend']} {r['target']} {r['precision']}: {r['note']}" for r in failed))


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(path: str, as_json: bool) -> None:
    """Show an ONNX model's interface and ops, or an artifact's manifest."""
    from edgec.frontend.inspect import summarize_artifact, summarize_model, tensorrt_summary

    info = summarize_artifact(path) if path.endswith(".edgec") else summarize_model(path)
    if as_json:
        _echo_json(info)
        return
    from rich.table import Table

    console = _console()
    if info["kind"] == "artifact":
        m = info["manifest"]
        console.print(f"[bold]{path}[/bold]: {m['backend']} artifact for target {m['target']['name']} "
                      f"({m['precision']}), {info['size_bytes']} bytes, edgec {m['edgec_version']}")
        if m["backend"] == "tvm":
            console.print(f"TVM target: {json.dumps(m['target'].get('tvm'))}")
        if m["backend"] == "tensorrt":
            for line in tensorrt_summary(m):
                console.print(line, markup=False)
        console.print(f"passes: {', '.join(m['passes']) or 'none'}; toolchain: "
                      + ", ".join(f"{k} {v}" for k, v in m["toolchain"].items() if v))
        if m.get("quantization"):
            q = m["quantization"]
            console.print(f"int8 {q['format']}: weights {q['weights']}; activations {q['activations']}; "
                          f"calibration {q['calibration']['method']} on {q['calibration']['samples']} samples; "
                          f"kept float: {', '.join(q['kept_float']) or 'none'}")
        if m.get("backend_selection"):
            sel = m["backend_selection"]
            console.print(f"backend chosen by measurement: {sel['chosen']} ("
                          + "; ".join(f"{n} {r['verdict']}" + (f" p50 {r['p50_ms']} ms" if "p50_ms" in r else "")
                                      for n, r in sel["candidates"].items()) + ")")
        for n in (m.get("nms") or {}).get("nodes", []):
            console.print(f"NMS {n['node']}: runs on {n['runs_on']}, {n['strategy']}"
                          + (f" ({n['reason']})" if n.get("reason") else ""))
        specs = [("input", i) for i in m["inputs"]] + [("output", o) for o in m["outputs"]]
    else:
        console.print(f"[bold]{path}[/bold]: ONNX ({info['producer'] or 'unknown producer'}), opset "
                      + ", ".join(f"{d} {v}" for d, v in info["opset"].items())
                      + f"; {info['nodes']} nodes, {info['parameters']} parameters ({info['parameter_bytes']} bytes)")
        specs = [("input", i) for i in info["inputs"]] + [("output", o) for o in info["outputs"]]
    io = Table("", "name", "shape", "dtype")
    for role, s in specs:
        io.add_row(role, s["name"], "x".join(map(str, s["shape"])), s["dtype"])
    console.print(io)
    if info["kind"] == "onnx":
        ops = Table("op", "count")
        for op, count in info["ops"].items():
            ops.add_row(op, str(count))
        console.print(ops)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--backends", default="tvm,ort", show_default=True,
              help="TEST,REFERENCE: the backend under test and the one it is compared against.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(PRECISIONS),
              help="Precision the model under test is compiled with.")
@click.option("--reference", type=click.Path(dir_okay=False),
              help="Compare MODEL against this ONNX file (run on the reference backend) instead of itself.")
@click.option("--dataset", default="auto", show_default=True,
              help="digits, random or DATA.npz (auto: digits when the input fits, else random).")
@click.option("--samples", default=8, show_default=True, type=int, help="Samples to run.")
@click.option("--atol", default=1e-4, show_default=True, type=float)
@click.option("--rtol", default=1e-3, show_default=True, type=float)
@click.option("--min-cosine", default=0.999, show_default=True, type=float,
              help="Quantized (QDQ/int8) comparisons: a tensor diverges below this cosine similarity.")
@click.option("--calib", help="--precision int8: calibration data, as for compile (digits or DATA.npz).")
@click.option("--calib-method", default="minmax", show_default=True,
              type=click.Choice(("minmax", "percentile", "entropy")))
@click.option("--calib-samples", default=64, show_default=True, type=int, help="Calibration samples to use.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False),
              help="Also write compare.json, compare.html and error_by_layer.png here.")
def compare(model, backends, precision, reference, dataset, samples, atol, rtol, min_cosine, calib, calib_method,
            calib_samples, as_json, out_dir) -> None:
    """Compare every intermediate tensor of MODEL on two backends (or against --reference)."""
    from edgec.compare import compare as run_compare
    from edgec.compare.render import summary, write
    from edgec.quantize.pipeline import Int8Options

    backend_list = _split_list(backends, "--backends")
    for b in backend_list:
        if b not in BACKENDS:
            raise EdgecError(f"--backends: unknown backend '{b}'; choose from {', '.join(BACKENDS)}")
    if calib and precision != "int8":
        raise EdgecError("--calib is only used with --precision int8")
    int8 = Int8Options(calib, calib_method, calib_samples)
    result = run_compare(model, backend_list, precision, reference, dataset, samples, atol, rtol, min_cosine, int8)
    if out_dir:
        write(result, Path(out_dir))
    if as_json:
        _echo_json(result.to_json())
    else:
        click.echo(summary(result))


@cli.group()
def zoo() -> None:
    """The reference networks: list, train, export."""


@zoo.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def zoo_list(as_json: bool) -> None:
    """Every zoo network with its held-out accuracy (from the cached training run)."""
    from edgec.zoo.registry import ZOO
    from edgec.zoo.train import cached_metrics

    rows = []
    for name, entry in ZOO.items():
        metrics = cached_metrics(name) or {}
        rows.append({"name": name, "input_shape": list(entry.input_shape), "dataset": entry.dataset,
                     "test_accuracy": metrics.get("test_accuracy"), "description": entry.description})
    if as_json:
        _echo_json(rows)
        return
    from rich.table import Table

    table = Table("name", "input", "dataset", "held-out accuracy", "description")
    for r in rows:
        acc = f"{100 * r['test_accuracy']:.2f}%" if r["test_accuracy"] is not None else "not trained"
        table.add_row(r["name"], "x".join(map(str, r["input_shape"])), r["dataset"], acc, r["description"])
    _console().print(table)


@zoo.command(name="train")
@click.argument("name")
def zoo_train(name: str) -> None:
    """Retrain NAME deterministically and update its cached weights."""
    from edgec.zoo import registry
    from edgec.zoo.train import cached_metrics, train_and_save

    try:
        registry.get(name)
    except KeyError as e:
        raise EdgecError(e.args[0]) from None
    train_and_save(name, log=lambda line: click.echo(line, err=True))
    metrics = cached_metrics(name)
    click.echo(f"{name}: held-out accuracy {100 * metrics['test_accuracy']:.2f}% "
               f"({metrics['n_test']} samples), trained in {metrics['train_seconds']:.1f} s")


@zoo.command(name="export")
@click.argument("name")
@click.option("--input-shape", "input_shape", metavar="DIMS", help="Export shape, e.g. 1x3x224x224.")
@click.option("--opset", default=17, show_default=True, type=int)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.pass_context
def zoo_export(ctx, name: str, input_shape: str | None, opset: int, output: str) -> None:
    """Export the trained zoo network NAME to ONNX."""
    if ":" in name:
        raise EdgecError(f"'{name}' is not a zoo name; use `edgec export MODULE:CALLABLE` for your own modules")
    ctx.invoke(export, model=name, input_shape=input_shape, opset=opset, output=output)


def _report_error(message: str, code: int) -> int:
    click.echo(f"edgec: error: {message}", err=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI and turns every failure into one `edgec: error:` line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="edgec", standalone_mode=False)
    except click.exceptions.Abort:
        return _report_error("aborted", 1)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        if debug:
            traceback.print_exc()
        return _report_error(" ".join(e.format_message().split()) + " (see --help)", 2)
    except EdgecError as e:
        if debug:
            traceback.print_exc()
        return _report_error(" ".join(str(e).split()), e.exit_code)
    except KeyboardInterrupt:
        return _report_error("interrupted", 130)
    except Exception as e:  # anything else is a bug in edgec or a toolchain: say so, briefly
        if debug:
            traceback.print_exc()
        detail = " ".join(str(e).split()) or "no message"
        return _report_error(f"internal error ({type(e).__name__}: {detail[:500]}); rerun with --debug for the "
                             "traceback and report it", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
