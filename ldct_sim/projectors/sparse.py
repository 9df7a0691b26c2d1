"""Sparse system matrices for the torch projector and the FBP backprojection: built once, cached, bounded.

A fan-beam operator of one geometry is a sparse matrix (CSR, ``torch.sparse_csr_tensor``) applied to a
batch of images or sinograms by one sparse-times-dense product (MKL on the CPU, cuSPARSE on a GPU).
This module holds what the two users share:

* **Symmetry.** When a full scan has ``n_views % 4 == 0``, view ``k + m·n_views/4`` of an image is view
  ``k`` of the image turned by ``m`` quarter turns (``torch.rot90(x, -m)``), because the source, the
  detector and the pixel grid all turn together. Only the first quarter of the views is stored (a
  quarter of the memory and of the build time), and one product applies it to the four turned images
  at once. The result is the same operator to float rounding (tests check it against the full matrix).
* **Memory bound.** Matrices in memory (host and GPU together) are kept in a least-recently-used registry
  of at most :func:`operator_memory_limit` bytes: ``LDCT_SIM_OPERATOR_MEMORY`` (bytes, or with a
  ``K``/``M``/``G`` suffix) or :func:`set_operator_memory_limit`; default a quarter of the physical
  memory. A matrix larger than the bound is not built: the caller computes its entries on the fly,
  a few views at a time (slower, same result).
* **Disk cache.** Matrices of at least :data:`DISK_CACHE_MIN_NNZ` entries (those that take seconds to
  build) are written to ``$LDCT_SIM_CACHE`` (default ``$XDG_CACHE_HOME/ldct_sim`` or
  ``~/.cache/ldct_sim``; ``LDCT_SIM_CACHE=off`` disables it), one file per operator named by a SHA-256
  of every :class:`~ldct_sim.geometry.FanBeamGeometry` field, the model and the format version, written
  to a temporary file and renamed (atomic), and read back memory-mapped (pages shared between processes
  and dropped by the OS under memory pressure). A file that does not match its key is rebuilt. The
  folder holds at most ``$LDCT_SIM_CACHE_SIZE`` bytes (default ``20G``) of these files: the least
  recently used are deleted first.

We use torch's own sparse CSR product rather than SciPy's so that one code path runs batched on a
GPU; SciPy only transposes (``tocsc``, linear time) when the adjoint is first needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..geometry import FanBeamGeometry

__all__ = [
    "SparseMatrix",
    "operator_memory_limit",
    "set_operator_memory_limit",
    "operator_cache_dir",
    "operator_cache_size_limit",
    "cached_matrix",
    "add_transpose",
    "clear_operator_registry",
    "rot90_symmetric",
    "images_to_columns",
    "columns_to_sinograms",
    "sinograms_to_columns",
    "columns_to_images",
    "DISK_CACHE_MIN_NNZ",
    "FORMAT_VERSION",
]

logger = logging.getLogger(__name__)

#: Matrices with fewer entries are built in memory only (they build in well under a second).
DISK_CACHE_MIN_NNZ = 1 << 24
#: Bumped whenever the stored matrices would change, so that old cache files are not reused.
FORMAT_VERSION = 1

_MEMORY_ENV = "LDCT_SIM_OPERATOR_MEMORY"
_CACHE_ENV = "LDCT_SIM_CACHE"
_CACHE_SIZE_ENV = "LDCT_SIM_CACHE_SIZE"
_memory_limit: int | None = None


def _parse_bytes(text: str, what: str = _MEMORY_ENV) -> int:
    s = str(text).strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(s[-1:], 1)
    number = s[:-1] if s[-1:] in "KMGT" else s
    try:
        value = float(number) * scale
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what}: expected a number of bytes such as 6G or 500M, got {text!r}.")
    return int(value)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def operator_memory_limit() -> int:
    """Bytes of sparse operators kept in memory: :func:`set_operator_memory_limit`, else
    ``$LDCT_SIM_OPERATOR_MEMORY``, else a quarter of the physical memory."""
    if _memory_limit is not None:
        return _memory_limit
    env = os.environ.get(_MEMORY_ENV)
    if env:
        return _parse_bytes(env)
    return _physical_memory() // 4


def set_operator_memory_limit(nbytes: int | str | None) -> None:
    """Set the bound of :func:`operator_memory_limit` (bytes, or text like ``"6G"``; ``None``: back to
    the default). Operators already held beyond the new bound are released."""
    global _memory_limit
    _memory_limit = None if nbytes is None else (_parse_bytes(nbytes) if isinstance(nbytes, str) else int(nbytes))
    if _memory_limit is not None and _memory_limit < 0:
        raise ValueError(f"set_operator_memory_limit: expected a non-negative number of bytes, got {nbytes!r}.")
    _REGISTRY.shrink(operator_memory_limit())


def operator_cache_dir() -> Path | None:
    """The disk cache folder (see the module docstring), or ``None`` when ``LDCT_SIM_CACHE`` is off."""
    env = os.environ.get(_CACHE_ENV)
    if env is not None and env.strip().lower() in ("", "0", "off", "none", "false", "no"):
        return None
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ldct_sim"


@contextlib.contextmanager
def build_threads():
    """Torch threads for building a matrix: one when the machine is oversubscribed (1-minute load average
    above the CPU count), else torch's setting. Building is many short element-wise loops; on a machine
    whose cores other processes hold, each parallel loop waits for a descheduled thread, and we measured
    a 512² build 8× slower with 2 threads than with 1 on 2 cores at load 10."""
    n = torch.get_num_threads()
    try:
        busy = os.getloadavg()[0] > (os.cpu_count() or 1)
    except (OSError, AttributeError):
        busy = False
    if busy and n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if busy and n > 1:
            torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------------------
# the matrix
# ---------------------------------------------------------------------------------------------------
@dataclass
class SparseMatrix:
    """A CSR matrix on the host (``crow``, ``col`` int32 or int64, ``val`` float32) and its torch
    copies per device and dtype (made on first use). ``transpose()`` is made on first use too."""

    crow: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor
    shape: tuple[int, int]
    _torch: dict = field(default_factory=dict, repr=False)
    _transpose: SparseMatrix | None = field(default=None, repr=False)

    @property
    def nnz(self) -> int:
        return int(self.val.numel())

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.crow, self.col, self.val))

    def torch(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``torch.sparse_csr_tensor`` on ``device`` with values of ``dtype`` (cached)."""
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:  # one copy per GPU, whether named "cuda" or "cuda:0"
            dev = torch.device("cuda", torch.cuda.current_device())
        key = (str(dev), dtype)
        t = self._torch.get(key)
        if t is None:
            crow, col = self.crow.to(dev), self.col.to(dev)
            val = self.val.to(device=dev, dtype=dtype)
            with warnings.catch_warnings():  # "sparse CSR support is in beta state"
                warnings.simplefilter("ignore", UserWarning)
                t = torch.sparse_csr_tensor(crow, col, val, size=self.shape, check_invariants=False)
            self._torch[key] = t
            _REGISTRY.shrink(operator_memory_limit(), keep=self)
        return t

    def transpose(self) -> SparseMatrix:
        """The transposed matrix as its own CSR (SciPy's linear-time ``tocsc``), made once."""
        if self._transpose is None:
            import scipy.sparse as sp

            a = sp.csr_matrix((self.val.numpy(), self.col.numpy(), self.crow.numpy()), shape=self.shape)
            t = a.tocsc()
            self._transpose = SparseMatrix(
                _index_tensor(t.indptr), _index_tensor(t.indices), torch.from_numpy(t.data), (self.shape[1], self.shape[0])
            )
            _REGISTRY.shrink(operator_memory_limit(), keep=self)
        return self._transpose

    def held_bytes(self) -> int:
        extra = 0 if self._transpose is None else self._transpose.held_bytes()
        for (device, dtype), t in self._torch.items():
            if device != "cpu":  # a full copy on the GPU
                extra += self.crow.numel() * self.crow.element_size() + self.col.numel() * self.col.element_size()
                extra += t.values().numel() * t.values().element_size()
            elif dtype != self.val.dtype:
                extra += t.values().numel() * t.values().element_size()
        return self.nbytes + extra


def _index_tensor(a: np.ndarray) -> torch.Tensor:
    dt = np.int32 if a.size == 0 or int(a.max()) < np.iinfo(np.int32).max else np.int64
    return torch.from_numpy(np.ascontiguousarray(a, dtype=dt))


def csr_from_counts(counts: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: tuple[int, int]) -> SparseMatrix:
    """CSR from the number of entries of each row (``counts``) and the entries in row order."""
    nnz = int(val.numel())
    idx = torch.int32 if max(nnz, shape[1]) < np.iinfo(np.int32).max else torch.int64
    crow = torch.zeros(shape[0] + 1, dtype=idx)
    crow[1:] = torch.cumsum(counts, 0)
    return SparseMatrix(crow, col.to(idx), val.to(torch.float32), shape)


# ---------------------------------------------------------------------------------------------------
# registry (memory bound) and disk cache
# ---------------------------------------------------------------------------------------------------
class _Registry:
    """Least-recently-used operators held in memory, at most :func:`operator_memory_limit` bytes."""

    def __init__(self):
        self._items: OrderedDict[str, SparseMatrix] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: str) -> SparseMatrix | None:
        with self._lock:
            m = self._items.get(key)
            if m is not None:
                self._items.move_to_end(key)
            return m

    def put(self, key: str, m: SparseMatrix) -> None:
        with self._lock:
            self._items[key] = m
            self._items.move_to_end(key)
            self.shrink(operator_memory_limit())

    def held(self) -> int:
        with self._lock:
            return sum(m.held_bytes() for m in self._items.values())

    def shrink(self, limit: int, keep: SparseMatrix | None = None) -> None:
        with self._lock:
            while self._items and self.held() > limit:
                key = next(iter(self._items))
                if self._items[key] is keep:
                    if len(self._items) == 1:
                        return
                    self._items.move_to_end(key)
                    key = next(iter(self._items))
                del self._items[key]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_REGISTRY = _Registry()


def clear_operator_registry() -> None:
    """Release every operator held in memory (files in the disk cache stay)."""
    _REGISTRY.clear()


def operator_key(kind: str, geometry: FanBeamGeometry, **params) -> str:
    """A stable text key of an operator: its kind, every geometry field, its parameters, the format."""
    return json.dumps({"kind": kind, "format": FORMAT_VERSION, "geometry": geometry.to_dict(), **params}, sort_keys=True)


def _cache_path(key: str, kind: str) -> Path | None:
    folder = operator_cache_dir()
    if folder is None:
        return None
    return folder / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt"


def _load(path: Path, key: str, what: str) -> SparseMatrix | None:
    try:
        d = torch.load(path, mmap=True, weights_only=True)
        if d.get("key") != key:
            raise ValueError("its key does not match (a hash collision or a stale file)")
        m = SparseMatrix(d["crow"], d["col"], d["val"], tuple(d["shape"]))
        if m.crow.numel() != m.shape[0] + 1 or m.col.numel() != m.nnz:
            raise ValueError("its arrays do not match its shape")
        if "tcrow" in d:
            m._transpose = SparseMatrix(d["tcrow"], d["tcol"], d["tval"], (m.shape[1], m.shape[0]))
        return m
    except Exception as err:  # noqa: BLE001 - any unreadable cache file is rebuilt, never trusted
        logger.warning("%s: ignoring the cache file %s (%s); rebuilding it", what, path, err)
        return None


def _save(path: Path, key: str, m: SparseMatrix, what: str) -> bool:
    """Write ``m`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            d = {"key": key, "crow": m.crow, "col": m.col, "val": m.val, "shape": list(m.shape)}
            if m._transpose is not None:
                t = m._transpose
                d.update(tcrow=t.crow, tcol=t.col, tval=t.val)
            torch.save(d, tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # as a plain open() would have made it (mkstemp makes it private)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _prune(path.parent, keep=path)
        return True
    except OSError as err:
        logger.warning("%s: could not write the cache file %s (%s); going on without it", what, path, err)
        return False


def operator_cache_size_limit() -> int:
    """Bytes of operator files kept in the disk cache: ``$LDCT_SIM_CACHE_SIZE`` (default 20G)."""
    return _parse_bytes(os.environ.get(_CACHE_SIZE_ENV, "20G"), _CACHE_SIZE_ENV)


def _prune(folder: Path, keep: Path) -> None:
    """Delete the least recently used operator files (ours only: ``fan-*.pt``) beyond the size limit."""
    try:
        files = sorted(folder.glob("fan-*.pt"), key=lambda f: f.stat().st_mtime)
        total = sum(f.stat().st_size for f in files)
        limit = operator_cache_size_limit()
        for f in files:
            if total <= limit:
                break
            if f != keep:
                total -= f.stat().st_size
                f.unlink()
                logger.info("operator cache: removed %s (over %s = %d bytes)", f, _CACHE_SIZE_ENV, limit)
    except (OSError, ValueError) as err:
        logger.warning("operator cache: could not prune %s (%s)", folder, err)


def cached_matrix(
    kind: str,
    key: str,
    build: Callable[[], SparseMatrix] | None,
    estimated_bytes: int,
    what: str,
    *,
    with_transpose: bool = False,
) -> SparseMatrix | None:
    """The operator ``key``: from memory, else from the disk cache, else ``build()`` (then cached).

    Returns ``None`` when ``estimated_bytes`` (the matrix, and its transpose when ``with_transpose``)
    exceed :func:`operator_memory_limit`, or when ``build`` is ``None`` and the matrix is neither in
    memory nor on disk: the caller then works on the fly.
    """
    m = _REGISTRY.get(key)
    if m is not None:
        return m
    if estimated_bytes > operator_memory_limit():
        return None
    path = _cache_path(key, kind)
    if path is not None and path.exists():
        m = _load(path, key, what)
        if m is not None:
            try:
                os.utime(path)  # recently used: pruned last
            except OSError:
                pass
    if m is None and build is None:
        return None
    if m is None:
        with build_threads():
            m = build()
        if with_transpose:
            m.transpose()
        if path is not None and m.nnz >= DISK_CACHE_MIN_NNZ and _save(path, key, m, what):
            # read it back memory-mapped: file-backed pages the OS can share between processes and drop
            m = _load(path, key, what) or m
    _REGISTRY.put(key, m)
    return m


def add_transpose(kind: str, key: str, m: SparseMatrix, what: str) -> SparseMatrix:
    """Make ``m``'s transpose; when ``m`` came from (or belongs in) the disk cache, rewrite its file with
    the transpose, so that the next process reads it instead of transposing again."""
    if m._transpose is not None:
        return m._transpose
    t = m.transpose()
    path = _cache_path(key, kind)
    if path is not None and m.nnz >= DISK_CACHE_MIN_NNZ:
        _save(path, key, m, what)
    return t


# ---------------------------------------------------------------------------------------------------
# quarter-turn symmetry: dense layouts for one sparse product over the four turned images
# ---------------------------------------------------------------------------------------------------
def rot90_symmetric(geometry: FanBeamGeometry) -> bool:
    """True when view ``k + n_views/4`` is view ``k`` turned by 90°: a full scan with ``n_views % 4 == 0``."""
    return geometry.is_full_scan and geometry.n_views % 4 == 0


def images_to_columns(x: torch.Tensor, turns: int) -> torch.Tensor:
    """``(B, n, n)`` images to ``(n², turns·B)`` columns: column ``m·B + b`` is ``rot90(x[b], -m)``."""
    b, n = x.shape[0], x.shape[-1]
    stack = torch.stack([torch.rot90(x, -m, dims=(-2, -1)) for m in range(turns)])  # (turns, B, n, n)
    return stack.permute(2, 3, 0, 1).reshape(n * n, turns * b)


def columns_to_sinograms(y: torch.Tensor, turns: int, n_det: int) -> torch.Tensor:
    """``(views/turns·n_det, turns·B)`` to ``(B, views, n_det)``: view ``m·V/turns + k`` from column ``m·B + b``."""
    vq = y.shape[0] // n_det
    b = y.shape[1] // turns
    return y.reshape(vq, n_det, turns, b).permute(3, 2, 0, 1).reshape(b, turns * vq, n_det)


def sinograms_to_columns(s: torch.Tensor, turns: int) -> torch.Tensor:
    """Inverse of :func:`columns_to_sinograms`: ``(B, views, n_det)`` to ``(views/turns·n_det, turns·B)``."""
    b, v, n_det = s.shape
    return s.reshape(b, turns, v // turns, n_det).permute(2, 3, 1, 0).reshape(v // turns * n_det, turns * b)


def columns_to_images(z: torch.Tensor, turns: int, n: int) -> torch.Tensor:
    """``(n², turns·B)`` to ``(B, n, n)``: the sum over ``m`` of column ``m·B + b`` turned back, ``rot90(·, m)``."""
    b = z.shape[1] // turns
    z = z.reshape(n, n, turns, b).permute(2, 3, 0, 1)  # (turns, B, n, n)
    out = z[0].clone()
    for m in range(1, turns):
        out += torch.rot90(z[m], m, dims=(-2, -1))
    return out
