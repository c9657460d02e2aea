"""A session on one board: handed out by a tracker for a key, or connected directly (`--rpc HOST:PORT`).

    board = BoardSpec("rpi4", tracker=("10.0.0.2", 9190), timeout=60).open()
    board.name, board.info          # "board 'rpi4' at 10.0.0.7:9090", what edgec.board.info says
    board.session                   # tvm.rpc.RPCSession
    board.close()

A board that stops answering is caught by `watchdog`: a SIGALRM whose handler raises interrupts the RPC
call blocked in TVM's socket loop (which checks Python's signals). A session interrupted that way is
mid-message and cannot be used again.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from edgec.errors import EdgecError
from edgec.runtime.remote import BoardLost, BoardUnavailable, reason
from edgec.runtime.remote.info import INFO_FUNCTION
from edgec.runtime.remote.tracker import Tracker
from edgec.tvm_process import prepare_tvm


class Board:
    """An open RPC session on a board, with what the board says about itself (None: a stock TVM server)."""

    def __init__(self, session, key: str, address: tuple[str, int], info: dict | None, timeout: float):
        self.session = session
        self.key = key
        self.address = address
        self.info = info
        self.timeout = timeout
        self.name = f"board '{key}' at {address[0]}:{address[1]}" if key else f"board at {address[0]}:{address[1]}"

    @property
    def device(self) -> str:
        """What `bench --json` reports as the device: rpc:KEY (rpc:HOST:PORT for a board without a key)."""
        return f"rpc:{self.key or '{}:{}'.format(*self.address)}"

    def close(self) -> None:
        """End the session (the board serves the next client); nothing else may hold it."""
        self.session = None


@dataclass(frozen=True)
class BoardSpec:
    """Where a command's board is (a key on a tracker, or an address) and how long to wait for it."""

    key: str
    tracker: tuple[str, int] | None = None
    direct: tuple[str, int] | None = None
    timeout: float = 60.0

    def open(self) -> Board:
        """A session on a board under the key from the tracker (waiting at most `timeout` s for a free one), or on
        the board at `direct` (served without a tracker, with that key). Raises BoardUnavailable saying what to do."""
        prepare_tvm()
        from tvm import rpc  # first: a board drops the key the tracker handed out if no client comes within ~6 s

        if self.tracker is not None:
            with Tracker(self.tracker, self.timeout) as t:
                host, port, match = t.request(self.key, self.timeout)
        else:
            (host, port), match = self.direct, self.key
            _probe(host, port, self.timeout)
        board = Board(None, self.key, (host, port), None, self.timeout)

        with watchdog(self.timeout, f"{board.name} did not answer within --rpc-timeout {self.timeout:g} s while "
                                    "connecting"):
            try:
                board.session = rpc.connect(host, port, key=match)
                board.info = _info(board.session)
            except EdgecError:
                raise
            except Exception as e:  # TVM's RPC errors: key mismatch, connection reset, not an RPC server
                detail = " ".join(str(e).split())[-300:]
                hint = ("; a board served without a tracker takes its own key: pass --rpc-key as given to `edgec "
                        "board serve --key`" if "cannot find server that matches key" in detail else "")
                raise BoardUnavailable(f"{board.name} refused the session ({detail}){hint}") from None
        return board


def _probe(host: str, port: int, timeout: float) -> None:
    """Fail at once, naming the address, when nothing listens there (TVM's connect would retry)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise BoardUnavailable(f"board at {host}:{port} is unreachable ({reason(e)}); start it there with "
                               f"`edgec board serve --port {port}` or check --rpc") from None


def _info(session) -> dict | None:
    try:
        function = session.get_function(INFO_FUNCTION)
    except AttributeError:  # "Module has no function 'edgec.board.info'": a stock tvm.exec.rpc_server
        return None
    return json.loads(function())


@contextmanager
def watchdog(seconds: float, message: str):
    """Raise BoardLost(message) if the block runs longer than `seconds`. Only the main thread gets signals;
    elsewhere the block just runs."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise BoardLost(message)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
