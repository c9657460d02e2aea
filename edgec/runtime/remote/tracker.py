"""A client of TVM's RPC tracker, speaking its protocol (tvm/rpc/base.py, tracker.py) over a socket with timeouts.

TVM's own `TrackerSession` retries a refused connection for 60 s and waits forever on a key no board
serves; this one fails at once when the tracker is unreachable or has no board under the key, and waits
at most `wait_s` for a busy one. It needs no TVM, so `edgec board list` runs on any machine.

    with Tracker(("127.0.0.1", 9190), timeout=10) as t:
        t.boards()                       # [{"key", "boards", "free", "busy", "pending", "addresses"}]
        host, port, match = t.request("rpi4", wait_s=60)   # then rpc.connect(host, port, match)
"""

from __future__ import annotations

import json
import socket
import struct

from edgec.runtime.remote import BoardUnavailable, reason

TRACKER_MAGIC = 0x2F271  # RPC_TRACKER_MAGIC
SUCCESS, REQUEST, SUMMARY = 0, 4, 6  # TrackerCode
START_TRACKER = "python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port {port}"


class Tracker:
    def __init__(self, address: tuple[str, int], timeout: float, option: str = "--rpc-tracker"):
        """Connect and shake hands; `option` is the command-line option that named the address (for errors)."""
        self.address = address
        self.name = f"{address[0]}:{address[1]}"
        try:
            self._sock = socket.create_connection(address, timeout=timeout)
        except OSError as e:
            raise BoardUnavailable(f"RPC tracker {self.name} is unreachable ({reason(e)}); start it there with "
                                   f"`{START_TRACKER.format(port=address[1])}` or check {option}") from None
        try:
            self._sock.sendall(struct.pack("<i", TRACKER_MAGIC))
            magic = struct.unpack("<i", self._recv(4))[0]
        except OSError as e:
            self.close()
            raise BoardUnavailable(f"{self.name} is not an RPC tracker (no tracker handshake: {reason(e)}); "
                                   "pass the tracker's HOST:PORT, not a board's") from None
        if magic != TRACKER_MAGIC:
            self.close()
            raise BoardUnavailable(f"{self.name} is not an RPC tracker (wrong handshake); pass the tracker's "
                                   "HOST:PORT, not a board's")

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def summary(self) -> dict:
        """TVM's summary: {"queue_info": {key: {"free", "pending"}}, "server_info": [{"key": "server:K", "addr"}]}."""
        return self._call([SUMMARY])

    def boards(self) -> list[dict]:
        """Per key: boards registered, free, busy (= registered - free), requests pending, and their addresses.
        A key whose boards all left stays in TVM's queue table; it is listed only while requests wait on it."""
        summary = self.summary()
        addresses: dict[str, list[str]] = {}
        for server in summary["server_info"]:
            addresses.setdefault(server["key"].partition(":")[2], []).append(f"{server['addr'][0]}:"
                                                                              f"{server['addr'][1]}")
        rows = []
        for key in sorted(set(addresses) | set(summary["queue_info"])):
            queue = summary["queue_info"].get(key, {"free": 0, "pending": 0})
            total = len(addresses.get(key, []))
            if total or queue["pending"]:
                rows.append({"key": key, "boards": total, "free": queue["free"], "busy": total - queue["free"],
                             "pending": queue["pending"], "addresses": sorted(addresses.get(key, []))})
        return rows

    def request(self, key: str, wait_s: float) -> tuple[str, int, str]:
        """(host, port, match key) of a board under `key`, waiting at most wait_s for one to come free."""
        rows = {row["key"]: row for row in self.boards()}
        if not rows.get(key, {}).get("boards"):
            keys = ", ".join(k for k, row in rows.items() if row["boards"]) or "none"
            raise BoardUnavailable(f"tracker {self.name} has no board under key '{key}' (keys: {keys}); start one "
                                   f"with `edgec board serve --tracker {self.name} --key {key}` on the board")
        self._sock.settimeout(wait_s)
        host, port, match = self._call([REQUEST, key, "", 1], on_timeout=(
            f"no board under key '{key}' on tracker {self.name} came free within --rpc-timeout {wait_s:g} s "
            f"({rows[key]['boards']} registered, all busy); try again later or raise --rpc-timeout"))
        return host, int(port), match

    def _call(self, message: list, on_timeout: str | None = None):
        data = json.dumps(message).encode()
        try:
            self._sock.sendall(struct.pack("<i", len(data)) + data)
            size = struct.unpack("<i", self._recv(4))[0]
            code, *value = json.loads(self._recv(size))
        except TimeoutError:
            raise BoardUnavailable(on_timeout or f"RPC tracker {self.name} did not answer within "
                                                 f"{self._sock.gettimeout():g} s") from None
        except (OSError, ValueError) as e:
            raise BoardUnavailable(f"RPC tracker {self.name} dropped the connection ({reason(e)})") from None
        if code != SUCCESS:
            raise BoardUnavailable(f"RPC tracker {self.name} refused {message[0]} (code {code})")
        return value[0] if value else None

    def _recv(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self._sock.recv(min(left, 65536))
            if not chunk:
                raise ConnectionResetError("connection closed")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

