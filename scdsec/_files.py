"""Writing outputs so that a file that exists is complete.

Below every layer that writes (the model's checkpoints, the workflow's steps, figures and
tables), so that none of them depends on another for it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

PathLike = str | os.PathLike


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path (file or folder) beside ``path``; move it into place on success.

    A file or folder that exists at ``path`` is therefore always complete: an interrupted
    write leaves at most the hidden temporary, which is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if path.is_dir():
            _remove(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
