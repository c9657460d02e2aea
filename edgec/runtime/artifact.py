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
import tempfile
import zipfile
from pathlib import Path

from edgec.errors import EdgecError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_ARTIFACT_BYTES = 4 << 30


class ArtifactError(EdgecError):
    """The artifact is missing, corrupt, tampered with, or from an unknown schema version."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()


def write_atomic(path: str | os.PathLike, write) -> None:
    """Call `write(tmp_path)` then rename onto `path`; on any failure remove the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_artifact(path: str | os.PathLike, manifest: dict, files: dict[str, bytes]) -> None:
    """Write manifest + payload files to `path`; fills in the manifest's schema and file hashes."""
    for name in files:
        if not _SAFE_NAME.match(name) or name == MANIFEST:
            raise ValueError(f"invalid payload file name {name!r}")
    manifest = dict(manifest, schema_version=SCHEMA_VERSION,
                    files={name: sha256_bytes(data) for name, data in sorted(files.items())})
    entries = [(MANIFEST, canonical_json(manifest))] + sorted(files.items())

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w") as zf:
            for name, data in entries:
                info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.create_system = 3  # unix, so the permission bits above are meaningful
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data, compresslevel=6)

    write_atomic(path, write)


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
        raise ArtifactError(f"{path}: not an edgec artifact (not a valid zip: {e}); "
                            "recompile it with `edgec compile`") from None
    except (zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
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
        if info.create_system == 3 and mode and not stat.S_ISREG(mode):
            raise ArtifactError(f"{path}: entry '{name}' is not a regular file (symlinks are refused)")
        if info.file_size > MAX_ARTIFACT_BYTES:
            raise ArtifactError(f"{path}: entry '{name}' claims {info.file_size} bytes; refusing it")


def _parse_manifest(path: Path, data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: {MANIFEST} must be a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArtifactError(f"{path}: unknown artifact schema_version {version!r}; this edgec reads "
                            f"schema_version {SCHEMA_VERSION}. Recompile the model with this edgec, or "
                            "install the edgec version that wrote it")
    for key, kind in (("backend", str), ("files", dict), ("inputs", list), ("outputs", list), ("target", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ArtifactError(f"{path}: {MANIFEST} lacks a valid '{key}' field")
    return manifest
