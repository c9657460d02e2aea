"""Boards over the network, through TVM's RPC (tracker, server, remote Relax VM).

Board side, what a board runs with only numpy, the TVM runtime and `edgec.runtime` installed:
    board.py     `python -m edgec.runtime.remote.board --tracker HOST:PORT --key KEY` (`edgec board serve`)
    info.py      what a board says about itself (`edgec.board.info`): arch, CPU features, versions
Client side:
    tracker.py   the tracker's protocol over a plain socket with timeouts: summary, boards per key, request
    session.py   a session on one board (through a tracker or direct), refused before upload when it cannot
                 run the artifact; a watchdog for a board that stops answering
    run.py       upload an artifact's TVM module, run it on the board's VM, time it on the board

edgec connects only to the addresses it is given: the tracker (or `--rpc HOST:PORT`), and the board the
tracker hands out for the key.
"""

from __future__ import annotations

from edgec.errors import EdgecError


class BoardUnavailable(EdgecError):
    """No board to run on: the tracker or board is unreachable, has no board for the key, or none came free."""


class BoardLost(EdgecError):
    """A board stopped answering or dropped in the middle of a run: exit 1 (nothing is written)."""

    exit_code = 1


def parse_address(value: str, option: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); EdgecError naming `option` otherwise. Checked before anything is imported."""
    host, sep, port = str(value).rpartition(":")
    host = host.strip("[]")  # [::1]:9190
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgecError(f"{option} '{value}': expected HOST:PORT, e.g. 127.0.0.1:9190")
    return host, int(port)


def reason(e: Exception) -> str:
    """An OSError's words ("Connection refused"), else the exception's message or type."""
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
