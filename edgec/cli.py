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
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


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


@contextmanager
def _status(enabled: bool, message: str):
    """A spinner with the elapsed time on a TTY (stderr) while a step runs; nothing otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        bar.add_task(message, total=None)
        yield


def _stages(enabled: bool, title: str):
    """A `stage(name)` callback showing a running step's name and elapsed time on a TTY (what compile reports)."""
    if not enabled or not sys.stderr.isatty():
        return contextmanager(lambda: (yield lambda name: None))()
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    @contextmanager
    def shown():
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(title, total=None)
            yield lambda name: bar.update(task, description=f"{title}: {name}")

    return shown()


def _require_file(path: str, what: str, hint: str) -> None:
    """Fail at once, before any heavy import, when `path` does not exist."""
    if not Path(path).exists():
        raise EdgecError(f"{path}: no such {what} ({hint})")


def _split_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise EdgecError(f"{option} '{value}': expected a comma-separated list")
    return items


def _rpc_options(direct: bool = True):
    """--rpc-tracker / --rpc-key / --rpc-timeout (and --rpc HOST:PORT) for a command measured on a remote board."""
    options = [click.option("--rpc-tracker", metavar="HOST:PORT",
                            help="Measure on a board handed out by this TVM RPC tracker (with --rpc-key)."),
               click.option("--rpc-key", metavar="KEY", help="The boards' key on the tracker (`edgec board list`)."),
               click.option("--rpc-timeout", default=60.0, show_default=True, type=float, metavar="S",
                            help="Seconds to wait for a free board, and for the board to answer each step.")]
    if direct:
        options.insert(2, click.option("--rpc", "rpc_direct", metavar="HOST:PORT",
                                       help="Measure on the board served at HOST:PORT without a tracker "
                                            "(`edgec board serve --port PORT`; its --key, if any, as --rpc-key)."))

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _board_spec(rpc_tracker: str | None, rpc_key: str | None, rpc_timeout: float, rpc_direct: str | None = None):
    """The board a command measures on (None: this host), checked before anything heavy is imported."""
    from edgec.runtime.remote import parse_address
    from edgec.runtime.remote.session import BoardSpec

    if rpc_tracker and rpc_direct:
        raise EdgecError("--rpc-tracker and --rpc both name a board: use the tracker with --rpc-key, or --rpc alone")
    tracker = parse_address(rpc_tracker, "--rpc-tracker") if rpc_tracker else None
    direct = parse_address(rpc_direct, "--rpc") if rpc_direct else None
    if rpc_tracker and not rpc_key:
        raise EdgecError(f"--rpc-tracker needs --rpc-key KEY: the key the boards serve under (`edgec board list "
                         f"--tracker {rpc_tracker}` lists them)")
    if rpc_key is not None and not (rpc_tracker or rpc_direct):
        raise EdgecError("--rpc-key names boards on a tracker: add --rpc-tracker HOST:PORT (or --rpc HOST:PORT)")
    if not (rpc_tracker or rpc_direct):
        return None
    if rpc_timeout <= 0:
        raise EdgecError(f"--rpc-timeout {rpc_timeout:g}: must be > 0 seconds")
    return BoardSpec(rpc_key or "", tracker, direct, rpc_timeout)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgec")
@click.option("--debug", is_flag=True, help="Show Python tracebacks on errors (anywhere on the command line).")
def cli(debug: bool) -> None:
    """edgec: compile ONNX models for CPUs, CUDA GPUs and embedded boards, with measured reports."""


@cli.command()
@click.argument("model")
@click.option("--input-shape", "input_shape", metavar="DIMS", help="Export shape, e.g. 1x1x28x28.")
@click.option("--opset", type=int, help="ONNX opset to export.  [default: 18 dynamo, 17 torchscript]")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]),
              help="PyTorch's exporter: dynamo (torch.export based, PyTorch's default) or torchscript (legacy). "
                   "[default: dynamo; torchscript for zoo networks, as their artifacts and docs were made]")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx file.")
def export(model: str, input_shape: str | None, opset: int | None, exporter: str | None, output: str) -> None:
    """Export a zoo network (trained) or MODULE:CALLABLE returning a torch.nn.Module to ONNX."""
    from edgec.frontend.export import DEFAULT_OPSET, check_opset, export_onnx, resolve_exportable
    from edgec.frontend.shapes import parse_dims

    given = parse_dims(input_shape) if input_shape else None  # argument errors before torch is imported
    exporter = exporter or ("dynamo" if ":" in model else "torchscript")
    opset = DEFAULT_OPSET[exporter] if opset is None else opset
    check_opset(opset)
    with _status(True, f"export {model}"):
        net, default_shape, outputs = resolve_exportable(model)
        shape = given or default_shape
        if shape is None:
            raise EdgecError(f"'{model}' has no default input shape; pass --input-shape, e.g. 1x3x224x224")
        path = export_onnx(net, shape, output, opset=opset, output_names=outputs, exporter=exporter)
    traced = "x".join(map(str, shape))
    click.echo(f"wrote {path} ({model}, input batchx{'x'.join(map(str, shape[1:]))}: batch symbolic, traced at "
               f"{traced}; {exporter} exporter, opset {opset})")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Optimized .onnx file.")
@click.option("--passes", help="Comma-separated pass names (default: the standard pipeline).")
@click.option("--no-validate", is_flag=True, help="Skip the numeric check after each pass.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]DIMS",
              help="Fix an input's shape first, as for compile (names keep a dim symbolic: input=Nx3x224x224).")
@click.option("--json", "as_json", is_flag=True, help="Print the per-pass report as JSON.")
def optimize(model: str, output: str, passes: str | None, no_validate: bool, input_shapes, as_json: bool) -> None:
    """Run graph passes over MODEL and write the optimized ONNX."""
    from edgec.frontend.shapes import parse_input_shapes

    _require_model(model)
    shapes = parse_input_shapes(input_shapes)
    import onnx

    from edgec.files import write_atomic
    from edgec.frontend.loader import load_model
    from edgec.passes import DEFAULT_PIPELINE, PassContext, run_pipeline

    names = _split_list(passes, "--passes") if passes else list(DEFAULT_PIPELINE)
    graph = load_model(model, shapes)
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
              help="Fix an input's shape, e.g. input=1x1x28x28 (repeatable); a name keeps a dim symbolic: "
                   "input=Nx3x224x224.")
@click.option("--verify-data", metavar="digits|DATA.npz",
              help="--backend auto: check candidates on this data's first 8 samples (default: the calibration data, "
                   "else digits' held-out images when the input takes them).")
@click.option("--nms", default="auto", show_default=True, type=click.Choice(("auto", "host")),
              help="NonMaxSuppression: in the backend where it can (auto) or always in the runtime (host).")
@click.option("--weightless", is_flag=True,
              help="tensorrt: a weight-stripped plan, refitted at load from the ONNX weights the artifact carries "
                   "(TensorRT-RTX: needs a GPU at build time).")
@click.option("--no-winograd", "no_winograd", is_flag=True,
              help="tvm on CPUs: 3x3 convs direct, not Winograd (whose transformed weights take 16/9 to 4x the "
                   "bytes: ResNet-18's artifact 46 -> 95 MB); slower.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .edgec artifact.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def compile_cmd(model, target, backend, precision, calib, calib_method, calib_samples, max_accuracy_drop,
                validation_data, tuning_db, arch, input_shapes, verify_data, nms, weightless, no_winograd, output,
                as_json) -> None:
    """Compile MODEL (ONNX) for TARGET into one .edgec artifact."""
    from edgec.errors import UnsupportedError
    from edgec.frontend.shapes import parse_input_shapes
    from edgec.targets import check_target_name, cuda_target_name

    _require_model(model)
    if Path(output).suffix.lower() == ".onnx":
        raise EdgecError(f"-o {output}: an artifact is a .edgec zip (manifest + payload), not ONNX; name it "
                         f"{Path(output).with_suffix('.edgec')}")
    if (calib or max_accuracy_drop is not None or validation_data) and precision != "int8":
        raise EdgecError("--calib, --max-accuracy-drop and --validation-data are only used with --precision int8")
    if calib_samples < 1:
        raise EdgecError(f"--calib-samples {calib_samples}: must be >= 1")
    if tuning_db and backend == "ort":
        raise UnsupportedError("--tuning-db: backend 'ort' has no tuning database; use it with --backend tvm "
                               "(databases from `edgec tune`) or tensorrt (its timing cache)")
    target = cuda_target_name(target, arch)
    check_target_name(target)
    shapes = parse_input_shapes(input_shapes)
    if verify_data and backend != "auto":
        raise EdgecError("--verify-data is only used with --backend auto")
    from edgec.quantize.pipeline import Int8Options

    int8 = Int8Options(calib, calib_method, calib_samples, max_accuracy_drop, validation_data)
    if weightless and backend == "auto":
        raise EdgecError("--weightless is only used with --backend tensorrt")
    if no_winograd and backend != "tvm":
        raise EdgecError("--no-winograd is only used with --backend tvm (its CPU targets)")
    with _stages(not as_json, f"compile {Path(model).name} for {target}") as stage:
        if backend == "auto":
            from edgec.autoselect import compile_auto

            result = compile_auto(model, target, output, precision=precision, input_shapes=shapes,
                                  verify_data=verify_data, int8=int8, tuning_db=tuning_db, nms=nms, progress=stage)
        else:
            from edgec.compiler import compile_model

            result = compile_model(model, target, output, backend=backend, precision=precision, input_shapes=shapes,
                                   int8=int8, tuning_db=tuning_db, nms=nms, weightless=weightless,
                                   winograd=not no_winograd, progress=stage)
    if as_json:  # the manifest, plus this compile's times (kept out of the artifact: it is byte-reproducible)
        _echo_json(dict(result.manifest, compile={"seconds": round(result.seconds, 3), "stages_s": result.stages,
                                                  "toolchain_import_s": result.toolchain_s}))
        return
    size = result.path.stat().st_size
    for name, record in result.manifest.get("backend_selection", {}).get("candidates", {}).items():
        measured = f"p50 {record['p50_ms']:.3f} ms" if "p50_ms" in record else record["error"]
        click.echo(f"  {name}: {record['verdict']}, {measured}")
    built = f", engine built in {result.stats['build_s']:.2f} s" if "build_s" in result.stats else ""
    click.echo(f"wrote {result.path} ({result.manifest['backend']}, target {target}, {precision}, "
               f"{size / 1024:.1f} KiB) in {result.seconds:.1f} s{built} ({_stage_summary(result)})")


def _stage_summary(result) -> str:
    """'load 0.1 s, passes 0.4 s, ...; +1.9 s importing the toolchain, once per process'."""
    stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.stages.items() if seconds >= 0.05)
    return f"{stages}; +{result.toolchain_s:.1f} s importing the toolchain, once per process"


def _require_model(path: str) -> None:
    """A missing model fails at once; a bare name like `lenet` gets the command that exports the zoo network."""
    if not Path(path).exists():
        hint = (f"; to compile a zoo network, export it first: `edgec zoo export {path} -o {path}.onnx` (`edgec zoo "
                "list` lists them)") if not Path(path).suffix else ""
        raise EdgecError(f"{path}: no such file{hint}")


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
@_rpc_options(direct=False)
def tune(model, target, trials, tuning_db, backend, input_shapes, as_json, rpc_tracker, rpc_key, rpc_timeout) -> None:
    """Tune MODEL's kernels for TARGET with MetaSchedule; `compile --tuning-db` then uses the winners. Candidates
    are measured here, or on the boards under --rpc-key (several at once when the tracker has several)."""
    from edgec.frontend.shapes import parse_input_shapes
    from edgec.targets import check_target_name

    if trials < 1:
        raise EdgecError(f"--trials {trials}: must be at least 1")
    check_target_name(target)
    board = _board_spec(rpc_tracker, rpc_key, rpc_timeout)
    _require_model(model)
    shapes = parse_input_shapes(input_shapes)
    from edgec.backends.tvm.tuning.search.tuner import tune_model

    report = tune_model(model, target, trials, tuning_db, shapes, log=lambda line: click.echo(line, err=True),
                        board=board)
    if as_json:
        _echo_json(report.to_json())
        return
    for k in report.tuned:
        if k["best_ms"] is None:
            click.echo(f"  {k['task']}: rules {k['rules_ms']} ms, no candidate measured ({k['trials']} trials: raise "
                       "--trials) -> rules")
            continue
        faster = k["rules_ms"] is not None and k["best_ms"] < k["rules_ms"]
        click.echo(f"  {k['task']}: rules {k['rules_ms']} ms, tuned {k['best_ms']} ms ({k['trials']} trials)"
                   + (" -> database" if faster else " -> rules"))
    click.echo(f"tuned {len(report.tuned)} of {report.kernels} kernels ({len(report.already_tuned)} already in "
               f"{report.database}) in {report.seconds:.1f} s, measured on {report.measured_on}")


@cli.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--warmup", default=10, show_default=True, type=int)
@click.option("--iters", default=100, show_default=True, type=int)
@click.option("--batch", type=int, help="Batch size for a symbolic batch dimension (default 1).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]DIMS",
              help="Concrete shape for an input with symbolic dims (other symbolic dims take 1), e.g. "
                   "input=1x3x224x224.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (no progress bar).")
@click.option("--emulate", is_flag=True,
              help="Run an aarch64 artifact here under qemu-user (its latency is emulated, not the board's).")
@click.option("--reference", type=click.Path(dir_okay=False),
              help="With --emulate or on a board: a host build of the same model; fail if outputs differ by more "
                   "than 1e-4.")
@click.option("--kernels", type=int, metavar="N",
              help="TVM artifacts: also time each compiled kernel and print the N slowest (calls, ms, share).")
@_rpc_options()
def bench(artifact, device, warmup, iters, batch, input_shapes, as_json, emulate, reference, kernels, rpc_tracker,
          rpc_key, rpc_direct, rpc_timeout) -> None:
    """Measure an artifact's latency on random inputs (p50/p90/p99, throughput, peak RSS), here or on a board
    over TVM RPC (timed on the board)."""
    from edgec.frontend.shapes import parse_input_shapes
    from edgec.runtime.bench import check_counts

    if batch is not None and batch < 1:
        raise EdgecError(f"--batch {batch}: must be >= 1")
    check_counts(warmup, iters)
    board = _board_spec(rpc_tracker, rpc_key, rpc_timeout, rpc_direct)
    if board and (emulate or device != "cpu"):
        raise EdgecError("--rpc-tracker/--rpc run the artifact on the board's CPU: drop "
                         + ("--emulate" if emulate else f"--device {device}"))
    if reference and not (emulate or board):
        raise EdgecError("--reference is only used with --emulate or on a board (--rpc-tracker, --rpc)")
    if kernels is not None and (kernels < 1 or emulate or board):
        raise EdgecError(f"--kernels {kernels}: must be >= 1" if kernels < 1 else
                         "--kernels profiles an artifact running here: drop " + ("--emulate" if emulate else "--rpc*"))
    _require_file(artifact, "artifact file", "create one with `edgec compile`")
    shapes = parse_input_shapes(input_shapes, symbolic=False)
    if board:
        _bench_on_board(artifact, board, reference, warmup, iters, batch, shapes, as_json)
        return
    if emulate:
        from edgec import emulate as emu

        with _status(not as_json, f"bench {Path(artifact).name} under qemu (starting the emulated board)"):
            result = emu.bench(artifact, reference, warmup=warmup, iters=iters, batch=batch, device=device,
                               shapes=shapes)
        if as_json:
            _echo_json(result)
        else:
            click.echo(emu.summary(result))
        emu.check(result)  # exit 1 when the outputs differ from --reference's
        return
    import edgec.runtime as rt
    from edgec.runtime.bench import benchmark

    with _status(not as_json, f"loading {Path(artifact).name}"):
        module = rt.load(artifact, device=device)
    if kernels and module.backend != "tvm":
        raise EdgecError(f"--kernels: {artifact} is a '{module.backend}' artifact; per-kernel times need one compiled "
                         "with --backend tvm")
    with _progress(not as_json, iters, f"bench {Path(artifact).name}") as advance:
        result = benchmark(module, warmup=warmup, iters=iters, batch=batch, progress=advance, shapes=shapes)
    profile = None
    if kernels:
        from edgec.runtime.bench import make_inputs
        from edgec.runtime.profile import profile_kernels

        with _status(not as_json, "timing each kernel"):
            profile = profile_kernels(module, make_inputs(module.inputs, batch, shapes=shapes))
        result["kernels"] = [vars(k) for k in profile[:kernels]]
    if as_json:
        _echo_json(result)
        return
    lat = result["latency_ms"]
    click.echo(f"{artifact}: {result['backend']} {result['target']} {result['precision']} on {device}, "
               f"batch {result['batch']}, {iters} iters")
    click.echo(_fed_shapes(module.inputs, result["input_shapes"]))
    click.echo("latency ms: " + "  ".join(f"{k} {lat[k]:.3f}" for k in ("mean", "p50", "p90", "p99", "min", "max")))
    click.echo(f"throughput {result['throughput_per_s']:.1f}/s, peak RSS {result['peak_rss_mb']:.0f} MiB")
    if profile is not None:
        from edgec.runtime.profile import format_kernels

        click.echo(format_kernels(profile, kernels))


def _bench_on_board(artifact, board, reference, warmup, iters, batch, shapes, as_json) -> None:
    """`bench --rpc*`: refused before connecting when TVM RPC cannot run it, before upload when the board cannot."""
    from edgec.errors import CheckFailed
    from edgec.runtime.artifact import read_manifest
    from edgec.runtime.bench import compare_to_reference, load_reference
    from edgec.runtime.remote import run
    from edgec.runtime.remote.info import check_backend

    manifest = read_manifest(artifact)
    check_backend(artifact, manifest)
    ref = load_reference(reference, manifest) if reference else None
    with _status(not as_json, f"bench {Path(artifact).name} on {board.key or 'the board'}"):
        session = board.open()
        result, outputs, feeds = run.bench(session, artifact, warmup, iters, batch, shapes)
    if ref is not None:
        result["reference"] = compare_to_reference(outputs, ref, feeds)
    if as_json:
        _echo_json(result)
    else:
        info, lat = result["board"], result["latency_ms"]
        where = "emulated by qemu-user" if info["emulated"] else (info["model"] or info["machine"])
        click.echo(f"{artifact}: {result['backend']} {result['target']} {result['precision']} on {result['device']} "
                   f"({session.name}: {info['arch']}, {where}), batch {result['batch']}, {iters} runs timed on the "
                   "board")
        click.echo("latency ms: " + "  ".join(f"{k} {lat[k]:.3f}" for k in ("mean", "p50", "p90", "p99", "min", "max")))
        rss = f", peak RSS {result['peak_rss_mb']:.0f} MiB on the board" if result["peak_rss_mb"] else ""
        click.echo(f"throughput {result['throughput_per_s']:.1f}/s{rss}")
        if ref is not None:
            r = result["reference"]
            click.echo(f"outputs vs {r['artifact']} ({r['target']}): max abs err {r['max_abs_err']:.3g} (atol "
                       f"{r['atol']:g}): {'match' if r['within_atol'] else 'MISMATCH'}")
    r = result.get("reference")
    if r and not r["within_atol"]:
        raise CheckFailed(f"{artifact}: outputs on {session.name} differ from {r['artifact']} by "
                          f"{r['max_abs_err']:.3g} (more than {r['atol']:g}); the {result['target']} build computes "
                          "different numbers")


def _fed_shapes(inputs, fed: dict) -> str:
    """'inputs: input 4x3x1x1 (symbolic batchx3xHxW)' and how to choose other sizes."""
    parts, symbolic = [], False
    for name, shape, _ in inputs:
        dims = "x".join(map(str, fed[name]))
        spec = "x".join(map(str, shape))
        if any(isinstance(d, str) for d in shape):
            parts.append(f"{name} {dims} (symbolic {spec})")
            symbolic = symbolic or any(isinstance(d, str) for d in shape[1:])
        else:
            parts.append(f"{name} {dims}")
    hint = "; symbolic dims other than the batch took 1: set them with --input-shape NAME=DIMS" if symbolic else ""
    return "inputs: " + ", ".join(parts) + hint


@cli.command()
@click.argument("model")
@click.option("--targets", default="cpu", show_default=True, help="Comma-separated targets.")
@click.option("--precisions", default="fp32", show_default=True, help="Comma-separated precisions.")
@click.option("--backends", default="tvm,ort", show_default=True, help="Comma-separated backends.")
@click.option("--dataset", default="digits", show_default=True, help="digits, shapes or DATA.npz.")
@click.option("--iters", default=100, show_default=True, type=int, help="Timed runs per row.")
@click.option("--emulate/--no-emulate", default=None,
              help="aarch64 rows: run them under qemu-user (default: when qemu-aarch64-static is installed).")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Report directory.")
@_rpc_options()
def report(model, targets, precisions, backends, dataset, iters, emulate, out_dir, rpc_tracker, rpc_key, rpc_direct,
           rpc_timeout) -> None:
    """Compile MODEL (zoo name or .onnx) for every target x precision x backend and measure it: here, under qemu
    (aarch64 rows), or on a board over TVM RPC (the tvm rows it runs); each row says where it ran."""
    from edgec.runtime.bench import check_counts
    from edgec.targets import check_target_name

    check_counts(10, iters)
    board = _board_spec(rpc_tracker, rpc_key, rpc_timeout, rpc_direct)
    target_list = _split_list(targets, "--targets")
    for t in target_list:
        check_target_name(t)
    precision_list = _split_list(precisions, "--precisions")
    backend_list = _split_list(backends, "--backends")
    for p in precision_list:
        if p not in PRECISIONS:
            raise EdgecError(f"--precisions: unknown precision '{p}'; choose from {', '.join(PRECISIONS)}")
    for b in backend_list:
        if b not in BACKENDS:
            raise EdgecError(f"--backends: unknown backend '{b}'; choose from {', '.join(BACKENDS)}")
    from edgec.report.evaluate import evaluate
    from edgec.report.render import markdown, write_report

    total = 1 + len(target_list) * len(precision_list) * len(backend_list)
    with _progress(True, total, "report") as advance:
        result = evaluate(model, target_list, precision_list, dataset, Path(out_dir), backend_list,
                          iters=iters, progress=advance, emulate=emulate, board=board)
    files = write_report(result, Path(out_dir))
    click.echo(markdown(result))
    click.echo(f"report written to {files['md'].parent}/ (report.json, report.md, report.html, plots)")
    failed = [r for r in result["rows"] if r["status"] == "failed"]
    if failed:
        raise EdgecError(f"{len(failed)} report row(s) failed: "
                         + "; ".join(f"{r['backend']} {r['target']} {r['precision']}: {r['note']}" for r in failed))


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]DIMS",
              help="ONNX models: the interface with this input shape, as compile --input-shape would see it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(path: str, input_shapes, as_json: bool) -> None:
    """Show an ONNX model's interface and ops, or an artifact's manifest."""
    from edgec.frontend.inspect import summarize_artifact, summarize_model, tensorrt_summary
    from edgec.frontend.shapes import parse_input_shapes

    artifact = path.endswith(".edgec")
    if artifact and input_shapes:
        raise EdgecError("--input-shape applies to ONNX models; an artifact's shapes are fixed when it is compiled")
    if artifact:
        _require_file(path, "artifact file", "create one with `edgec compile`")
    else:
        _require_model(path)
    info = summarize_artifact(path) if artifact else summarize_model(path, parse_input_shapes(input_shapes))
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
        features = m["target"].get("cpu_features") or []
        console.print("needs CPU features: " + (", ".join(features) if features else "none beyond the architecture")
                      + f" ({m['target'].get('arch')})")
        if m["backend"] == "tensorrt":
            for line in tensorrt_summary(m):
                console.print(line, markup=False)
        console.print(f"passes: {', '.join(m['passes']) or 'none'}; toolchain: "
                      + ", ".join(f"{k} {v}" for k, v in m["toolchain"].items() if v))
        if m.get("quantization"):
            console.print(_quantization_lines(m["quantization"]))
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


def _quantization_lines(q: dict) -> str:
    """The int8 record as `inspect` prints it: format, calibration, layers kept float, measured accuracy."""
    line = (f"int8 {q['format']}: weights {q['weights']}; activations {q['activations']}; calibration "
            f"{q['calibration']['method']} on {q['calibration']['samples']} samples; kept float: "
            f"{', '.join(q['kept_float']) or 'none'}")
    if q.get("eval_accuracy"):
        acc, where = q["eval_accuracy"], q.get("validation", {})
        line += (f"\naccuracy budget {q['accuracy_budget_points']:g} points: fp32 {100 * acc['fp32']:.2f}% -> int8 "
                 f"{100 * acc['int8']:.2f}% on {where.get('samples', '?')} validation samples "
                 f"({where.get('split', '')}; measured on {where.get('measured_on', '?')})")
    return line


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
    _require_model(model)
    if reference:
        _require_model(reference)
    int8 = Int8Options(calib, calib_method, calib_samples)
    with _status(not as_json, f"compare {Path(model).name} ({backend_list[0]} vs {backend_list[1]})"):
        result = run_compare(model, backend_list, precision, reference, dataset, samples, atol, rtol, min_cosine,
                             int8)
    if out_dir:
        write(result, Path(out_dir))
    if as_json:
        _echo_json(result.to_json())
    else:
        click.echo(summary(result))
        if out_dir:
            click.echo(f"wrote {Path(out_dir) / 'compare.json'}, compare.html and error_by_layer.png")
    first = result.first_divergent
    if first is not None:  # a check that failed: exit 1, after the results (as Polygraphy does)
        from edgec.errors import CheckFailed

        raise CheckFailed(f"{model}: tensor '{first.tensor}' from node '{first.node}' (op {first.op}) diverges "
                          "beyond tolerance; see the comparison above")


@cli.group()
def board() -> None:
    """Boards over the network (TVM RPC): serve this machine as one, list a tracker's (docs/boards.md)."""


@board.command(name="serve")
@click.option("--tracker", metavar="HOST:PORT", help="Register with this TVM RPC tracker (without it: serve direct "
                                                      "connections, for `--rpc HOST:PORT`).")
@click.option("--key", default="", help="The key clients ask the tracker for, e.g. rpi4 (needed with --tracker).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=9090, show_default=True, type=int, help="First port to try.")
@click.option("--port-end", default=9199, show_default=True, type=int, help="Ports tried: [--port, --port-end).")
@click.option("--custom-addr", metavar="ADDR", help="Address the tracker hands to clients (a board behind NAT).")
def board_serve(tracker, key, host, port, port_end, custom_addr) -> None:
    """Serve this machine as a board: TVM's RPC server in this process, plus edgec.board.info (arch, CPU features),
    for `bench|report|tune --rpc-*`. On a board with only the runtime: `python3 -m edgec.runtime.remote.board`."""
    from edgec.runtime.remote import parse_address

    if tracker and not key:
        raise EdgecError("--tracker needs --key: the name clients ask the tracker for (e.g. --key rpi4)")
    address = parse_address(tracker, "--tracker") if tracker else None
    from edgec.runtime.remote.board import serve

    try:
        serve(key, address, host, port, port_end, custom_addr)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


@board.command(name="list")
@click.option("--tracker", required=True, metavar="HOST:PORT", help="The TVM RPC tracker to ask.")
@click.option("--timeout", default=10.0, show_default=True, type=float, metavar="S", help="Seconds to wait for it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def board_list(tracker, timeout, as_json) -> None:
    """The tracker's boards per key: how many, free, busy, requests waiting, their addresses."""
    from edgec.runtime.remote import parse_address
    from edgec.runtime.remote.tracker import Tracker

    address = parse_address(tracker, "--tracker")
    with Tracker(address, timeout, "--tracker") as t:
        rows = t.boards()
    if as_json:
        _echo_json({"tracker": tracker, "keys": rows})
        return
    from rich.table import Table

    table = Table("key", "boards", "free", "busy", "pending", "addresses",
                  title=f"tracker {tracker}: {sum(r['boards'] for r in rows)} board(s) under {len(rows)} key(s)")
    for r in rows:
        table.add_row(r["key"], *(str(r[k]) for k in ("boards", "free", "busy", "pending")), " ".join(r["addresses"]))
    _console().print(table)


@cli.group()
def zoo() -> None:
    """The reference networks: list, train, export."""


@zoo.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def zoo_list(as_json: bool) -> None:
    """Every zoo network with its held-out metric (from the committed training run)."""
    from edgec.zoo.registry import ZOO
    from edgec.zoo.train import cached_metrics

    rows = []
    for name, entry in ZOO.items():
        metrics = cached_metrics(name) or {}
        rows.append({"name": name, "input_shape": list(entry.input_shape), "dataset": entry.dataset,
                     "task": entry.task, "test_accuracy": metrics.get("test_accuracy"),
                     "held_out": _held_out_metric(entry.task, metrics), "description": entry.description})
    if as_json:
        _echo_json(rows)
        return
    from rich.table import Table

    table = Table("name", "input", "dataset", "held-out metric", "description")
    for r in rows:
        table.add_row(r["name"], "x".join(map(str, r["input_shape"])), r["dataset"], r["held_out"], r["description"])
    _console().print(table)


def _held_out_metric(task: str, metrics: dict) -> str:
    """'96.11% top-1', '98.76% of pixels, mIoU 0.953', 'mAP@0.5 0.8135, mAP@0.5:0.95 0.5755'."""
    if "test_accuracy" not in metrics:
        return "not trained"
    if task == "detection":
        return f"mAP@0.5 {metrics['map_50']:.4f}, mAP@0.5:0.95 {metrics['map_50_95']:.4f}"
    if task == "segmentation":
        return f"{100 * metrics['test_accuracy']:.2f}% of pixels, mIoU {metrics['test_miou']:.3f}"
    return f"{100 * metrics['test_accuracy']:.2f}% top-1"


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
@click.option("--opset", type=int, help="[default: 18 dynamo, 17 torchscript]")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="torchscript", show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.pass_context
def zoo_export(ctx, name: str, input_shape: str | None, opset: int | None, exporter: str, output: str) -> None:
    """Export the trained zoo network NAME to ONNX."""
    if ":" in name:
        raise EdgecError(f"'{name}' is not a zoo name; use `edgec export MODULE:CALLABLE` for your own modules")
    ctx.invoke(export, model=name, input_shape=input_shape, opset=opset, exporter=exporter, output=output)


def _report_error(message: str, code: int) -> int:
    click.echo(f"edgec: error: {message}", err=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI and turns every failure into one `edgec: error:` line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args  # anywhere on the line, before or after the subcommand
    args = [a for a in args if a != "--debug"]
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
