"""Writing output files atomically: a failure never leaves a partial file (or the directories made for it)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgec.errors import EdgecError


def write_atomic(path: str | os.PathLike, write) -> None:
    """Call `write(tmp_path)` then rename onto `path`. On any failure remove the temporary file and the
    directories made for it; an OSError (no space, not a directory, no permission) becomes an EdgecError."""
    path = Path(path)
    blocker = next((d for d in path.parents if d.exists() and not d.is_dir()), None)
    if blocker is not None:
        raise EdgecError(f"{path}: cannot write the output ({blocker} is a file, not a directory); "
                         "choose another -o path")
    made = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        for d in made:  # innermost first
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        if isinstance(e, OSError):
            raise EdgecError(f"{path}: cannot write the output ({e.strerror or e}); choose another -o path") from e
        raise
