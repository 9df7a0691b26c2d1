"""The one atomic-write helper of ``ldct_scripts``: write to a temporary name beside the target, then rename.

A reader (a re-run, a concurrent inference, a crash's aftermath) therefore sees the old file or the new one,
never half of one. :func:`atomic_path` covers writers that need a path (a zip, an export);
:func:`atomic_write` covers bytes and text in hand.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed over ``path`` when the block succeeds.

    The temporary file sits in the same folder (a rename within one file system is atomic) under a hidden,
    unique name; it is removed when the block raises. Parent folders are created.

    Args:
        path: the file to (re)place.

    Yields:
        The temporary path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(path: str | os.PathLike, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically (parents created) and return the path.

    Args:
        path: the file to (re)place.
        data: text (encoded with ``encoding``) or bytes.
        encoding: the text encoding. Default UTF-8.
    """
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding=encoding)
    return Path(path)
