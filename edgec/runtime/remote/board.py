"""The board side of `edgec board serve`: TVM's RPC server, in this process, on a board with only numpy, the TVM
runtime and `edgec.runtime` installed.

    python3 -m edgec.runtime.remote.board --tracker HOST:PORT --key KEY [--host 0.0.0.0] [--port 9090]
    python3 -m edgec.runtime.remote.board --port 9090 [--key KEY]   # no tracker: clients use --rpc HOST:PORT

Not `python -m tvm.exec.rpc_server`: it starts its listener in a PopenWorker, which needs cloudpickle (not in
the runtime-only TVM) and re-executes the Python binary (which fails under qemu-user without binfmt_misc).
This runs TVM's own listen loop here instead; each session is still a forked child, so the functions
registered before it (`edgec.board.info`, `edgec.board.peak_rss_mb`) answer in every session. TVM's loop
ends for good when a session's child fails (a client that vanished mid-call) or the tracker is unreachable
for 60 s; this one re-enters it, registering with the tracker again, and serves the next client.
"""

from __future__ import annotations

import argparse
import errno
import json
import multiprocessing
import os
import shutil
import socket
import sys
import time

from edgec.errors import EdgecError
from edgec.runtime.remote import parse_address
from edgec.runtime.remote.info import INFO_FUNCTION, PEAK_RSS_FUNCTION, board_info, peak_rss_mb
from edgec.tvm_process import prepare_tvm


def serve(key: str, tracker: tuple[str, int] | None = None, host: str = "0.0.0.0", port: int = 9090,
          port_end: int = 9199, custom_addr: str | None = None) -> None:
    """Serve RPC sessions until killed: registered under `key` with the tracker, or direct connections."""
    prepare_tvm()  # threads, before TVM's first import
    import tvm_ffi
    from tvm.rpc import server  # the server and the tracker's client: no tornado, no cloudpickle needed

    info = board_info(key)
    tvm_ffi.register_global_func(INFO_FUNCTION, lambda: json.dumps(info), override=True)
    tvm_ffi.register_global_func(PEAK_RSS_FUNCTION, peak_rss_mb, override=True)
    multiprocessing.set_start_method("fork", force=True)  # sessions inherit the functions above (3.14: forkserver)
    sock, port = _bind(host, port, port_end)
    print(json.dumps({"edgec_board": "serving", "key": key, "host": host, "port": port,
                      "tracker": f"{tracker[0]}:{tracker[1]}" if tracker else None, "info": info}), flush=True)
    home = os.getcwd()
    while True:
        try:
            server._listen_loop(sock, port, key, tracker, None, custom_addr)  # noqa: SLF001  (TVM's own loop)
        except (RuntimeError, OSError) as e:
            server.logger.warning("%s; serving again in 2 s", " ".join(str(e).split()))
            work = os.getcwd()  # a failed session leaves its work directory as the cwd
            os.chdir(home)
            if work != home:
                shutil.rmtree(work, ignore_errors=True)
            time.sleep(2)


def _bind(host: str, port: int, port_end: int) -> tuple[socket.socket, int]:
    """A listening socket on the first free port in [port, port_end), as TVM's own server binds."""
    family = socket.getaddrinfo(host, port, 0, 0, socket.IPPROTO_TCP)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for candidate in range(port, max(port_end, port + 1)):
        try:
            sock.bind((host, candidate))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                continue
            raise EdgecError(f"cannot listen on {host}:{candidate} ({e.strerror})") from None
        sock.listen(1)
        return sock, candidate
    raise EdgecError(f"no free port in [{port}, {port_end}) on {host}; choose another --port")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgec.runtime.remote.board", description=__doc__.split("\n")[0])
    parser.add_argument("--tracker", metavar="HOST:PORT", help="register with this RPC tracker (else serve direct "
                                                               "connections)")
    parser.add_argument("--key", default="", help="the key clients ask the tracker for (e.g. rpi4)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=9090, help="first port to try")
    parser.add_argument("--port-end", type=int, default=9199, help="ports tried: [--port, --port-end)")
    parser.add_argument("--custom-addr", help="address the tracker hands to clients (behind NAT)")
    args = parser.parse_args(argv)
    try:
        if args.tracker and not args.key:
            raise EdgecError("--tracker needs --key: the name clients ask the tracker for")
        tracker = parse_address(args.tracker, "--tracker") if args.tracker else None
        serve(args.key, tracker, args.host, args.port, args.port_end, args.custom_addr)
    except EdgecError as e:
        print(f"edgec: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
