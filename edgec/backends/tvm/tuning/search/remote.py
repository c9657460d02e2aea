"""`edgec tune --rpc-tracker H:P --rpc-key K`: MetaSchedule's RPCRunner measures candidates on the key's boards.

What differs from measuring here (workers.py), each because a board has only the TVM runtime:
- candidates are shared libraries linked here for the target (MetaSchedule's default .tar of objects is
  linked on the board when loaded, and a board has no compiler);
- their random inputs are made here and copied over (the runtime-only TVM lacks random_fill_for_measure);
- a session is requested with a timeout (TVM's request waits forever on a key no board serves), and once no
  board is left for the key the search stops, naming the board, instead of failing every remaining candidate.
The runner's worker processes (one per board) unpickle `create_session` and `alloc_on_host` by importing
this module.
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np

from edgec.backends.tvm.link import export_options
from edgec.errors import UnsupportedError
from edgec.runtime.remote import BoardUnavailable
from edgec.runtime.remote.info import hint, mismatch, require_info
from edgec.runtime.remote.session import BoardSpec
from edgec.runtime.remote.tracker import Tracker
from edgec.targets import Target

NO_BOARD = "edgec: no board left for the key: "


def check_board(spec: BoardSpec, target: Target) -> tuple[str, int]:
    """(what measures: "N board(s) under key K on tracker H:P (arch ...)", N), refusing a target the boards do not
    run before anything is built."""
    if target.device != "cpu":
        raise UnsupportedError(f"cannot tune target '{target.name}' on boards: edgec tunes CPU targets over RPC")
    board = spec.open()
    try:
        info = require_info(board.info, board.name)
    finally:
        board.close()
    why = mismatch(target.to_json(), info)
    if why:
        raise UnsupportedError(f"cannot tune target '{target.name}' on {board.name}: {why}; "
                               f"{hint(target.to_json(), info, 'tune a target the board runs')}")
    with Tracker(spec.tracker, spec.timeout) as t:
        count = next(row["boards"] for row in t.boards() if row["key"] == spec.key)
    kind = "emulated by qemu-user" if info["emulated"] else info["model"] or info["machine"]
    return (f"{count} board(s) under key '{spec.key}' on tracker {spec.tracker[0]}:{spec.tracker[1]} (first: "
            f"{board.name}, {info['arch']}, {kind})"), count


def shared_library_export(target: Target):
    """The builder's export: each candidate as a .so linked here for `target` (a cross linker off the host arch)."""
    options = export_options(target)

    def export(module) -> str:
        path = os.path.join(tempfile.mkdtemp(prefix="edgec-ms-"), "tvm_tmp_mod.so")  # MetaSchedule removes the dir
        module.export_library(path, **options)
        return path

    return export


def runner(spec: BoardSpec, workers: int):
    """MetaSchedule's RPCRunner through the tracker, `workers` candidates measured at once, stopping the search
    once no board is left for the key."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture

    config = ms.runner.EvaluatorConfig(number=3, repeat=3, min_repeat_ms=50, enable_cpu_cache_flush=False)
    rpc = ms.runner.RPCConfig(tracker_host=spec.tracker[0], tracker_port=spec.tracker[1], tracker_key=spec.key,
                              session_timeout_sec=math.ceil(spec.timeout))
    inner = ms.runner.RPCRunner(rpc, config, f_create_session=create_session, f_alloc_argument=alloc_on_host,
                                max_workers=workers)

    @derived_object
    class Checked(PyRunnerFuture):
        def __init__(self, future):
            super().__init__()
            self.future = future

        def done(self):
            return self.future.done()

        def result(self):
            result = self.future.result()
            if result.error_msg and lost(result.error_msg):
                raise RuntimeError(NO_BOARD + lost(result.error_msg))  # TVM's scheduler re-raises it as RuntimeError
            return result

    @derived_object
    class StopWithoutBoards(PyRunner):
        def __init__(self):
            super().__init__()

        def run(self, runner_inputs):
            return [Checked(f) for f in inner.run(runner_inputs)]

    return StopWithoutBoards()


def lost(message: str) -> str | None:
    """Why no board is left, from an error that ended the search (None: another error)."""
    return " ".join(message[message.index(NO_BOARD) + len(NO_BOARD):].split()) if NO_BOARD in message else None


def create_session(rpc_config):
    """RPCRunner's f_create_session (in its worker): a board within the session timeout, or an error that ends
    the search (TVM's own waits forever once the key's last board is gone)."""
    from tvm import rpc

    try:
        with Tracker((rpc_config.tracker_host, rpc_config.tracker_port), rpc_config.session_timeout_sec) as t:
            host, port, match = t.request(rpc_config.tracker_key, rpc_config.session_timeout_sec)
    except BoardUnavailable as e:
        raise RuntimeError(NO_BOARD + str(e)) from None
    return rpc.connect(host, port, key=match, session_timeout=rpc_config.session_timeout_sec)


def alloc_on_host(session, device, args_info, alloc_repeat):
    """RPCRunner's f_alloc_argument: random inputs made here, copied to the board."""
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common

    rng = np.random.default_rng(0)

    def fill(tensor) -> None:
        dtype, shape = np.dtype(str(tensor.dtype)), tuple(int(d) for d in tensor.shape)
        values = rng.integers(-8, 8, size=shape) if dtype.kind in "iub" else rng.uniform(-1, 1, size=shape)
        tensor.copyfrom(np.asarray(values).astype(dtype))

    return alloc_argument_common(fill, device, args_info, alloc_repeat)
