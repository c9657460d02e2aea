"""The `.edgec` artifact: one zip holding `manifest.json` and the backend's payload files.

Writing is deterministic (sorted entries, fixed timestamps and permissions, canonical JSON) and
atomic (a temporary file renamed into place), so the same inputs and toolchain give the same bytes
and a failure never leaves a partial artifact. Reading verifies every payload's sha256 against the
manifest before anything is handed to native code, and refuses unknown schema versions, names that
could escape a directory, symlinks and entries the manifest does not list. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import zipfile
import zlib
from pathlib import Path

from edgec.errors import EdgecError
from edgec.files import write_atomic

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_ARTIFACT_BYTES = 4 << 30  # also the cap on the sum of the entries' uncompressed sizes
MAX_ENTRIES = 64
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")


class ArtifactError(EdgecError):
    """The artifact is missing, corrupt, tampered with, or from an unknown schema version."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Payload files this large are stored, not deflated: a compiled library is mostly weights, which do not compress
# (ResNet-50's 102.5 MB library deflated to 94.9 MB), and deflating GPT-2's 422 MB one took 14 s of its compile.
STORE_BYTES = 1 << 20


def canonical_json(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()


def write_artifact(path: str | os.PathLike, manifest: dict, files: dict[str, bytes]) -> dict:
    """Write manifest + payload files to `path`; fills in the manifest's schema and file hashes and
    returns the manifest exactly as written (what `read_manifest` would give back)."""
    for name in files:
        if not _SAFE_NAME.match(name) or name == MANIFEST:
            raise ValueError(f"invalid payload file name {name!r}")
    manifest = dict(manifest, schema_version=SCHEMA_VERSION,
                    files={name: sha256_bytes(data) for name, data in sorted(files.items())})
    manifest_bytes = canonical_json(manifest)
    entries = [(MANIFEST, manifest_bytes)] + sorted(files.items())

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w") as zf:
            for name, data in entries:
                info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.create_system = 3  # unix, so the permission bits above are meaningful
                info.compress_type = zipfile.ZIP_STORED if len(data) >= STORE_BYTES else zipfile.ZIP_DEFLATED
                zf.writestr(info, data, compresslevel=6)

    write_atomic(path, write)
    return json.loads(manifest_bytes)


def read_artifact(path: str | os.PathLike) -> tuple[dict, dict[str, bytes]]:
    """Read and verify an artifact; return (manifest, {payload name: bytes})."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file (create one with `edgec compile`)")
    size = path.stat().st_size
    if size > MAX_ARTIFACT_BYTES:
        raise ArtifactError(f"{path}: {size} bytes is larger than the {MAX_ARTIFACT_BYTES} byte limit")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            _check_entries(path, infos)
            blobs = {info.filename: zf.read(info) for info in infos}
    except zipfile.BadZipFile as e:
        raise ArtifactError(f"{path}: not an edgec artifact (not a valid zip: {e}; truncated, or not an .edgec "
                            "file); recompile it with `edgec compile`") from None
    except (zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError,
            zlib.error) as e:  # RuntimeError: encrypted entry; zlib.error: corrupt deflate stream
        raise ArtifactError(f"{path}: unreadable artifact ({e}); recompile it with `edgec compile`") from None
    if MANIFEST not in blobs:
        raise ArtifactError(f"{path}: no {MANIFEST} inside; not an edgec artifact")
    manifest = _parse_manifest(path, blobs.pop(MANIFEST))
    listed = manifest["files"]
    unlisted = sorted(set(blobs) - set(listed))
    if unlisted:
        raise ArtifactError(f"{path}: entry '{unlisted[0]}' is not listed in the manifest; "
                            "refusing a tampered artifact")
    for name, digest in sorted(listed.items()):
        if name not in blobs:
            raise ArtifactError(f"{path}: payload '{name}' listed in the manifest is missing")
        if sha256_bytes(blobs[name]) != digest:
            raise ArtifactError(f"{path}: sha256 of payload '{name}' does not match the manifest; "
                                "the artifact was modified or corrupted, refusing to load it")
    return manifest, blobs


def read_manifest(path: str | os.PathLike) -> dict:
    """The verified manifest of an artifact."""
    return read_artifact(path)[0]


def _check_entries(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) > MAX_ENTRIES:
        raise ArtifactError(f"{path}: {len(infos)} entries (an artifact holds at most {MAX_ENTRIES}); "
                            "not an edgec artifact")
    if sum(info.file_size for info in infos) > MAX_ARTIFACT_BYTES:
        raise ArtifactError(f"{path}: entries claim more than {MAX_ARTIFACT_BYTES} bytes uncompressed; "
                            "refusing it")
    seen = set()
    for info in infos:
        name = info.filename
        if name in seen:
            raise ArtifactError(f"{path}: duplicate entry '{name}'; refusing a tampered artifact")
        seen.add(name)
        if not _SAFE_NAME.match(name):
            raise ArtifactError(f"{path}: entry name {name!r} is not a plain file name "
                                "(path traversal or directories are refused)")
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise ArtifactError(f"{path}: entry '{name}' is not a regular file (symlinks are refused)")


def _parse_manifest(path: Path, data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ArtifactError(f"{path}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: {MANIFEST} must be a JSON object")
    version = manifest.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ArtifactError(f"{path}: unknown artifact schema_version {version!r}; this edgec reads "
                            f"schema_version {SCHEMA_VERSION}. Recompile the model with this edgec, or "
                            "install the edgec version that wrote it")
    for key, kind in (("backend", str), ("files", dict), ("inputs", list), ("outputs", list), ("target", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ArtifactError(f"{path}: {MANIFEST} lacks a valid '{key}' field")
    for name, digest in manifest["files"].items():
        if not _SAFE_NAME.match(name) or name == MANIFEST or not isinstance(digest, str) or not _SHA256.match(digest):
            raise ArtifactError(f"{path}: {MANIFEST} 'files' entry {name!r} is not a payload name with a sha256")
    if not manifest["outputs"]:
        raise ArtifactError(f"{path}: {MANIFEST} lists no outputs")
    for key in ("inputs", "outputs"):
        for spec in manifest[key]:
            _check_io_spec(path, key, spec)
    _check_nms(path, manifest)
    target = manifest["target"]
    features = target.get("cpu_features", [])
    if (not isinstance(target.get("name"), str) or not isinstance(target.get("device"), str)
            or not isinstance(target.get("arch", ""), str)
            or not isinstance(features, list) or not all(isinstance(f, str) for f in features)):
        raise ArtifactError(f"{path}: {MANIFEST} 'target' needs a string name, device and arch and a list of "
                            "cpu_features")
    return manifest


def _check_io_spec(path: Path, key: str, spec) -> None:
    """An input/output entry: {"name": str, "shape": [int >= 0 | symbol], "dtype": one of DTYPES}."""
    ok = (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("shape"), list)
          and all((type(d) is int and d >= 0) or (isinstance(d, str) and d) for d in spec["shape"])
          and spec.get("dtype") in DTYPES)
    if not ok:
        raise ArtifactError(f"{path}: {MANIFEST} '{key}' entry {json.dumps(spec)[:200]} is not "
                            f"{{name, shape, dtype}} with dtype one of {', '.join(DTYPES)}")


_NMS_SPLIT = {"output": str, "boxes": str, "scores": str, "max_output_boxes_per_class": int,
              "iou_threshold": (int, float), "score_threshold": (int, float, type(None)), "center_point_box": int}


def _check_nms(path: Path, manifest: dict) -> None:
    """The optional "nms" entry: {"host": [split, ...] | falsy, "graph_outputs": [io spec, ...]}."""
    nms = manifest.get("nms")
    if nms is None:
        return
    host = nms.get("host") if isinstance(nms, dict) else None
    ok = isinstance(nms, dict) and (not host or (
        isinstance(host, list) and isinstance(nms.get("graph_outputs"), list) and nms["graph_outputs"]
        and all(isinstance(split, dict) and all(type(split.get(k)) is not bool and isinstance(split.get(k), kind)
                                                for k, kind in _NMS_SPLIT.items()) for split in host)))
    if not ok:
        raise ArtifactError(f"{path}: {MANIFEST} 'nms' is not {{host: [splits], graph_outputs: [...]}}")
    if host:
        for spec in nms["graph_outputs"]:
            _check_io_spec(path, "nms.graph_outputs", spec)
        produced = {o["name"] for o in nms["graph_outputs"]} | {split["output"] for split in host}
        unproduced = [o["name"] for o in manifest["outputs"] if o["name"] not in produced]
        if unproduced:
            raise ArtifactError(f"{path}: output '{unproduced[0]}' is produced neither by the graph nor by host NMS")
