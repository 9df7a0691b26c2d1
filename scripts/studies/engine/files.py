"""Files of a study: atomic text and JSON writes, tolerant JSON reads, digests, the output-folder option type."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path

from ldct_scripts.files import atomic_write

__all__ = ["output_folder", "write_text", "jsonable", "write_json", "read_json", "fingerprint", "file_digest"]


def output_folder(text: str) -> str:
    """``argparse`` type of an output-folder option (``--results-dir``): the path, if it can be a folder.

    Refuses (``argparse.ArgumentTypeError``, which argparse prints as ``error: argument --results-dir:
    ...``, exit status 2) a path that is a file or lies under one, before anything is written.

    Args:
        text: the option's value.
    """
    from ldct_sim.io import check_output_folder

    try:
        check_output_folder(text)
    except NotADirectoryError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (parents created; :func:`ldct_scripts.files.atomic_write`).

    Args:
        path: the file.
        text: its content.
    """
    return atomic_write(path, text)


def jsonable(obj):
    """Plain JSON: tuples to lists, paths to strings, non-finite floats to None, numpy scalars to Python.

    Args:
        obj: nested mappings, sequences and scalars.
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return jsonable(obj.item())
    return obj


def write_json(path, obj) -> Path:
    """Write strict JSON atomically (non-finite floats become ``null``).

    Args:
        path: the file.
        obj: what :func:`jsonable` turns into plain JSON.
    """
    return write_text(path, json.dumps(jsonable(obj), indent=1, allow_nan=False) + "\n")


def read_json(path):
    """The JSON in ``path``, or ``None`` when it is missing or unreadable (a half-written file counts as missing).

    Args:
        path: the file.
    """
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def fingerprint(obj) -> str:
    """16 hex digits of the SHA-256 of ``obj`` as canonical JSON.

    Args:
        obj: what :func:`jsonable` turns into plain JSON.
    """
    return hashlib.sha256(json.dumps(jsonable(obj), sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path, chunk: int = 1 << 20) -> str:
    """16 hex digits of the SHA-256 of a file's bytes.

    Args:
        path: the file.
        chunk: bytes read at a time.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()[:16]
