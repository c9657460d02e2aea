"""An artifact's TVM module on a board: uploaded, loaded in the board's Relax VM, run, timed on the board.

    board = BoardSpec("rpi4", tracker=("10.0.0.2", 9190)).open()
    with RemoteModule(board, "m.edgec") as module:   # checks the board first: refused before anything is uploaded
        outputs = module.run([x])                      # manifest order, copied back
        times_ms = module.time([x], warmup=10, iters=100)   # on-board runs, one each (TVM's time evaluator)

The VM is driven through set_input / invoke_stateful / get_output: calling `vm["main"]` over RPC returns an
opaque remote object for tuple outputs, and VirtualMachine.get_outputs keeps the session alive through a
reference cycle (the board stays busy until Python's cyclic GC runs). Every step runs under the watchdog;
a board that drops or stops answering raises BoardLost naming the board, the step and what was done.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from edgec.errors import EdgecError
from edgec.runtime.artifact import read_artifact
from edgec.runtime.bench import input_shapes, latency_stats, make_inputs
from edgec.runtime.executors import payload
from edgec.runtime.remote import BoardLost
from edgec.runtime.remote.info import PEAK_RSS_FUNCTION, check_artifact
from edgec.runtime.remote.session import Board, watchdog

LIBRARY = "model.so"


class RemoteModule:
    """Use as `with RemoteModule(board, path) as m:`; leaving the block (or a failed upload) ends the session."""

    def __init__(self, board: Board, artifact: str, manifest_files: tuple[dict, dict] | None = None):
        self.board = board
        self.path = str(artifact)
        self.done = ["connected"]
        self._vm = None
        try:
            self.manifest, files = manifest_files or read_artifact(artifact)
            check_artifact(self.path, self.manifest, board.info, board.name)  # before upload
            self._load(payload(files, LIBRARY, "tvm"))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> RemoteModule:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _load(self, library: bytes) -> None:
        import tvm
        import tvm.runtime.vm

        self._tvm = tvm
        session = self.board.session
        with self._step(f"uploading {LIBRARY}", f"uploaded {LIBRARY} ({len(library) / 1024:.1f} KiB)"):
            session.upload(bytearray(library), LIBRARY)
        with self._step(f"loading {LIBRARY} in the board's VM", "loaded it in the board's VM"):
            self._dev = session.cpu()
            self._vm = tvm.runtime.vm.VirtualMachine(session.load_module(LIBRARY), self._dev).module
        self._set_input, self._invoke = self._vm["set_input"], self._vm["invoke_stateful"]
        self._arity, self._output = self._vm["get_output_arity"], self._vm["get_output"]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One run on `inputs` (manifest order); the outputs copied back, in manifest order."""
        with self._step("running it", "ran it"):
            self._stage(inputs)
            self._invoke("main")
            return [o.numpy() for o in self._outputs()]

    def time(self, inputs: list[np.ndarray], warmup: int, iters: int) -> list[float]:
        """Milliseconds of `iters` single runs timed on the board's clock, after `warmup` runs. Timed in chunks
        that each take at most a quarter of the board's timeout, so the watchdog covers every chunk."""
        with self._step(f"warming up ({warmup} runs)", f"warmed up ({warmup} runs)"):
            self._stage(inputs)
            start = time.perf_counter()
            for _ in range(max(1, warmup)):
                self._invoke("main")
            per_run = (time.perf_counter() - start) / max(1, warmup)  # with the round trip: an overestimate
        chunk = max(1, min(iters, int(self.board.timeout / 4 / max(per_run, 1e-6))))
        times: list[float] = []
        while len(times) < iters:
            n = min(chunk, iters - len(times))
            with self._step(f"timing {iters} runs ({len(times)} done)"):
                result = self._vm.time_evaluator("invoke_stateful", self._dev, number=1, repeat=n)("main")
            times += [1e3 * s for s in result.results]
        self.done.append(f"timed {iters} runs")
        return times

    def peak_rss_mb(self) -> float | None:
        """The board session's peak RSS (None on a board that does not report it)."""
        with self._step("reading its memory use", "read its memory use"):
            try:
                return float(self.board.session.get_function(PEAK_RSS_FUNCTION)())
            except AttributeError:
                return None

    def close(self) -> None:
        """Drop the VM and the session: the board serves its next client."""
        self._vm = self._set_input = self._invoke = self._arity = self._output = None
        self.board.close()

    def _stage(self, inputs: list[np.ndarray]) -> None:
        self._set_input("main", *[self._tvm.runtime.tensor(np.ascontiguousarray(x), device=self._dev)
                                  for x in inputs])

    def _outputs(self, *index: int) -> list:
        """The outputs of the last run, nested tuples flattened, without get_outputs' reference cycle."""
        arity = self._arity("main", *index)
        if arity == -1:
            return [self._output("main", *index)]
        return [t for i in range(arity) for t in self._outputs(*index, i)]

    @contextmanager
    def _step(self, doing: str, done: str | None = None):
        """Run a step under the watchdog; BoardLost naming the board, the step and what was done before."""
        lost = (f"{self.board.name} stopped answering while {doing} of {self.path} (no answer within "
                f"--rpc-timeout {self.board.timeout:g} s)")
        try:
            with watchdog(self.board.timeout, lost):
                yield
        except BoardLost as e:
            raise BoardLost(f"{e}; done: {', '.join(self.done)}; nothing was written") from None
        except EdgecError:
            raise
        except Exception as e:  # TVM's RPC errors: the board dropped (kShutdown, connection reset) or failed
            detail = " ".join(str(e).split())[-300:] or type(e).__name__
            raise BoardLost(f"lost {self.board.name} while {doing} of {self.path} ({detail}); done: "
                            f"{', '.join(self.done)}; nothing was written") from None
        if done:
            self.done.append(done)


def bench(board: Board, artifact: str, warmup: int = 10, iters: int = 100, batch: int | None = None,
          shapes: dict | None = None) -> tuple[dict, list[np.ndarray], dict]:
    """`edgec bench --rpc*`: (the contract's bench dict measured on the board, the first run's outputs, the
    inputs fed). "device" is rpc:KEY; "board" is what the board says about itself; the latency is on-board."""
    manifest, files = read_artifact(artifact)
    specs = [(i["name"], tuple(i["shape"]), i["dtype"]) for i in manifest["inputs"]]
    feeds = make_inputs(specs, batch, shapes=shapes)
    steps = {}
    start = time.perf_counter()
    with RemoteModule(board, artifact, (manifest, files)) as module:
        steps["upload_and_load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        outputs = module.run(list(feeds.values()))
        steps["first_run_s"] = time.perf_counter() - start
        start = time.perf_counter()
        stats = latency_stats(module.time(list(feeds.values()), warmup, iters))
        steps["timing_s"] = time.perf_counter() - start
        rss = module.peak_rss_mb()
    first = input_shapes(specs, batch, shapes)[specs[0][0]] if specs else ()
    batch_size = first[0] if first else 1
    result = {
        "artifact": str(artifact), "backend": manifest["backend"], "target": manifest["target"]["name"],
        "precision": manifest.get("precision", "fp32"), "device": board.device, "batch": int(batch_size),
        "iters": iters, "latency_ms": stats, "throughput_per_s": batch_size * 1e3 / stats["mean"],
        "peak_rss_mb": rss, "input_shapes": {name: list(x.shape) for name, x in feeds.items()},
        "board": dict(board.info, address="{}:{}".format(*board.address)),
        "timer": "on the board: TVM's time evaluator, one run per sample",
        "steps_s": {k: round(v, 4) for k, v in steps.items()},
    }
    return result, outputs, feeds
