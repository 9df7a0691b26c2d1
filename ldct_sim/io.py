"""Find and read real CT: DICOM series, single DICOM files and NIfTI volumes, as 2-D axial slices in HU.

Conventions:

* Slices come out as ``(H, W)`` float32 arrays in Hounsfield units, displayed the radiological way
  (DICOM's own convention): row index increasing towards the patient's posterior, column index towards
  the patient's left. DICOM pixel data are kept as stored; NIfTI slices are reoriented to match.
* ``spacing_mm`` is ``(row spacing, column spacing)`` in mm: DICOM ``PixelSpacing`` order.
* Slices of a volume are numbered from 0 in ascending position along the slice normal (inferior to
  superior for a standard axial series). ``slice_id`` is ``f"{source_id}_{index:04d}"``.
* ``source_id`` names one volume (a DICOM series or a NIfTI file) and is stable across runs and
  machines: ``<PatientID>_<8 hex digits of the SeriesInstanceUID hash>`` for DICOM, the file's path
  relative to the searched folder (without extension, ``/`` replaced by ``__``) for NIfTI.
  ``group_id`` is what dataset splits keep together: the DICOM ``PatientID`` (else study, else
  series), the ``source_id`` for NIfTI (one file is assumed to be one patient).

DICOM is read with pydicom (``RescaleSlope``/``RescaleIntercept`` applied by
:func:`pydicom.pixels.apply_modality_lut`), NIfTI with nibabel (read as HU; its
``scl_slope``/``scl_inter`` are applied; :func:`check_nifti_unit` refuses a volume whose values look
like μ in cm⁻¹, or like neither unit). A file that cannot be read, or that holds no CT image, raises
:class:`CTReadError`; :func:`find_ct` collects such files instead of stopping, so a dataset builder can
log them and carry on.

Example:
    >>> import pydicom.data
    >>> from ldct_sim.io import iter_ct_slices
    >>> s = next(iter_ct_slices(pydicom.data.get_testdata_file("CT_small.dcm")))
    >>> s.hu.shape, round(s.spacing_mm[0], 3)
    ((128, 128), 0.661)
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "CTReadError",
    "CTSlice",
    "CTSource",
    "CTInventory",
    "ReadFailure",
    "find_ct",
    "iter_ct_slices",
    "slice_affine",
    "guess_value_unit",
    "check_nifti_unit",
    "check_output_folder",
    "DICOM_SUFFIXES",
    "NIFTI_SUFFIXES",
    "VALUE_UNITS",
]

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def check_output_folder(path: str | os.PathLike) -> Path:
    """``path`` as a folder to write into: refuse one that is a file or lies under a file, before any work.

    Returns:
        ``Path(path)`` (it may not exist yet; the caller creates it).

    Raises:
        NotADirectoryError: ``path``, or a folder above it, is a file; the message names it.
    """
    out = Path(path)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"lies under {str(p)!r}, which is a file"
                raise NotADirectoryError(f"{str(path)!r} {what}; pass a folder (created if needed)")
            break
    return out


class CTReadError(ValueError):
    """A file could not be read as CT (corrupt, truncated, not an image, not CT, non-finite pixels).

    Attributes:
        path: the offending file.
        reason: what went wrong, in words.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class ReadFailure:
    """A file skipped while searching for CT, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True, eq=False)
class CTSlice:
    """One 2-D axial slice.

    Attributes:
        hu: ``(H, W)`` float32 image in HU (rows posterior-ward, columns left-ward).
        spacing_mm: ``(row, column)`` pixel spacing in mm.
        source_id: the volume it comes from (see the module docstring).
        index: slice number within the volume, from 0.
        group_id: patient (or volume) id that dataset splits keep together.
        path: the file it was read from.
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float]
    source_id: str
    index: int
    group_id: str
    path: str

    @property
    def slice_id(self) -> str:
        return slice_id(self.source_id, self.index)


def slice_id(source_id: str, index: int) -> str:
    """The stable id of slice ``index`` of volume ``source_id``: ``f"{source_id}_{index:04d}"``."""
    return f"{source_id}_{index:04d}"


def slice_affine(spacing_mm, shape: tuple[int, int] | None = None, z_mm: float = 0.0) -> np.ndarray:
    """A 4×4 NIfTI (RAS) affine for an ``(H, W)`` slice in this module's radiological layout.

    Rows run towards posterior (−y in RAS), columns towards the patient's left (−x in RAS). Saving a
    slice with this affine and reading it back with :func:`find_ct` (or opening it in a viewer) gives the
    same picture.

    Args:
        spacing_mm: ``(row, column)`` spacing in mm, or one number for square pixels.
        shape: ``(H, W)``; when given, the image centre sits at ``x = y = 0``, else pixel (0, 0) does.
        z_mm: position along the slice normal in mm. Default 0.
    """
    sr, sc = (float(spacing_mm), float(spacing_mm)) if np.isscalar(spacing_mm) else map(float, spacing_mm)
    a = np.zeros((4, 4))
    a[1, 0] = -sr  # row index -> posterior
    a[0, 1] = -sc  # column index -> patient's left
    a[2, 2] = 1.0
    a[3, 3] = 1.0
    if shape is not None:
        a[:2, 3] = -(a[:2, :2] @ ((np.asarray(shape[:2], dtype=float) - 1.0) / 2.0))
    a[2, 3] = float(z_mm)
    return a


def _safe(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text).strip()).strip("-.")
    return text or "anon"


def _short_hash(text: str) -> str:
    return hashlib.sha1(str(text).encode()).hexdigest()[:8]


def _check_finite(hu: np.ndarray, path, index: int) -> np.ndarray:
    if not np.isfinite(hu).all():
        bad = int((~np.isfinite(hu)).sum())
        raise CTReadError(path, f"slice {index} holds {bad} NaN or infinite pixels; clean or mask them first.")
    return hu


# ---------------------------------------------------------------------------------------------------
# DICOM
# ---------------------------------------------------------------------------------------------------
def _read_dicom_header(path: str):
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:  # noqa: BLE001 - corrupt files raise anything; the type goes into the reason
        raise CTReadError(path, f"not a readable DICOM file ({type(err).__name__}: {err})") from err
    if "Rows" not in ds or "Columns" not in ds:
        raise CTReadError(path, f"DICOM file holds no image (SOP class {ds.get('SOPClassUID', 'unknown')}).")
    modality = str(ds.get("Modality", "CT")).upper()
    if modality != "CT":
        raise CTReadError(path, f"DICOM modality is {modality!r}, not 'CT'; HU are only defined for CT.")
    return ds


def _dicom_spacing(ds, path) -> tuple[float, float]:
    spacing = ds.get("PixelSpacing")
    if spacing is None and "SharedFunctionalGroupsSequence" in ds:  # enhanced (multi-frame) CT
        try:
            spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        except (AttributeError, IndexError):
            spacing = None
    if spacing is None or len(spacing) != 2:
        raise CTReadError(path, "DICOM file has no PixelSpacing; the pixel size in mm is needed.")
    sr, sc = float(spacing[0]), float(spacing[1])
    if not (np.isfinite(sr) and np.isfinite(sc) and sr > 0 and sc > 0):
        raise CTReadError(path, f"DICOM PixelSpacing must be positive, got {list(spacing)!r}.")
    return sr, sc


def _dicom_sort_key(ds, path: str) -> tuple:
    pos, ori = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    if pos is not None and ori is not None and len(pos) == 3 and len(ori) == 6:
        normal = np.cross(np.asarray(ori[:3], float), np.asarray(ori[3:], float))
        return (0, float(np.dot(normal, np.asarray(pos, float))), path)
    inst = ds.get("InstanceNumber")
    if inst is not None:
        return (1, float(inst), path)
    return (2, 0.0, path)


@dataclass(frozen=True)
class CTSource:
    """One CT volume: a DICOM series (one file per slice), a multi-frame DICOM file, or a NIfTI file.

    Attributes:
        kind: ``"dicom"`` or ``"nifti"``.
        source_id: stable volume id (see the module docstring).
        group_id: patient id for dataset splits.
        paths: DICOM slice files in slice order, or the single file.
        n_slices: number of axial slices.
    """

    kind: str
    source_id: str
    group_id: str
    paths: tuple[str, ...]
    n_slices: int
    _multiframe: bool = field(default=False, repr=False)

    def slice_id(self, index: int) -> str:
        return slice_id(self.source_id, index)

    def read_slice(self, index: int) -> CTSlice:
        """Read slice ``index`` (0-based) in HU.

        Raises:
            IndexError: ``index`` out of range.
            CTReadError: the file is corrupt, truncated or holds non-finite pixels.
        """
        if not 0 <= index < self.n_slices:
            raise IndexError(f"CTSource.read_slice: `index` must be in [0, {self.n_slices}), got {index!r}.")
        if self.kind == "nifti":
            hu, spacing = _read_nifti_slice(self.paths[0], index)
            path = self.paths[0]
        else:
            path = self.paths[0] if self._multiframe else self.paths[index]
            hu, spacing = _read_dicom_slice(path, index if self._multiframe else None)
        return CTSlice(_check_finite(hu, path, index), spacing, self.source_id, index, self.group_id, path)

    def __iter__(self) -> Iterator[CTSlice]:
        for i in range(self.n_slices):
            yield self.read_slice(i)


def _read_dicom_slice(path: str, frame: int | None) -> tuple[np.ndarray, tuple[float, float]]:
    import pydicom

    try:
        from pydicom.pixels import apply_modality_lut  # pydicom >= 3
    except ImportError:  # pragma: no cover - pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut

    try:
        ds = pydicom.dcmread(path)
        raw = ds.pixel_array
        hu = apply_modality_lut(raw, ds)
    except Exception as err:  # noqa: BLE001 - decoders raise many types on truncated or odd data
        raise CTReadError(path, f"cannot decode DICOM pixel data ({type(err).__name__}: {err})") from err
    if frame is not None:
        hu = hu[frame]
    if hu.ndim != 2:
        raise CTReadError(path, f"expected a 2-D DICOM image, got pixel data shaped {tuple(hu.shape)}.")
    return np.asarray(hu, dtype=np.float32), _dicom_spacing(ds, path)


def _dicom_sources(files: list[str], failures: list[ReadFailure]) -> list[CTSource]:
    series: dict[str, list[tuple[tuple, str, object]]] = {}
    for path in files:
        try:
            ds = _read_dicom_header(path)
            _dicom_spacing(ds, path)
        except CTReadError as err:
            failures.append(ReadFailure(err.path, err.reason))
            continue
        uid = str(ds.get("SeriesInstanceUID", "")) or f"file:{os.path.abspath(path)}"
        series.setdefault(uid, []).append((_dicom_sort_key(ds, path), path, ds))
    sources = []
    for uid, items in series.items():
        items.sort(key=lambda t: t[0])
        ds0 = items[0][2]
        patient = str(ds0.get("PatientID", "") or "").strip()
        source_id = f"{_safe(patient or 'anon')}_{_short_hash(uid)}"
        group = patient or str(ds0.get("StudyInstanceUID", "") or "") or uid
        n_frames = int(ds0.get("NumberOfFrames", 1) or 1)
        if len(items) == 1 and n_frames > 1:
            sources.append(CTSource("dicom", source_id, _safe(group), (items[0][1],), n_frames, _multiframe=True))
        else:
            sources.append(CTSource("dicom", source_id, _safe(group), tuple(p for _, p, _ in items), len(items)))
    return sources


# ---------------------------------------------------------------------------------------------------
# NIfTI
# ---------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _nifti_volume(path: str, mtime: float):
    """The unscaled voxel array, its scaling and orientation; cached for the volume being sliced."""
    import nibabel as nib

    try:
        img = nib.load(path)
        proxy = img.dataobj
        data = np.asanyarray(proxy.get_unscaled()) if hasattr(proxy, "get_unscaled") else np.asanyarray(proxy)
    except Exception as err:  # noqa: BLE001 - truncated gzip, bad headers: many error types
        raise CTReadError(path, f"cannot read NIfTI data ({type(err).__name__}: {err})") from err
    slope = getattr(proxy, "slope", 1.0)
    inter = getattr(proxy, "inter", 0.0)
    zooms = tuple(round(float(z), 6) for z in img.header.get_zooms()[:3])  # float32 header -> clean mm
    return data, float(slope), float(inter), img.affine, zooms


def _nifti_layout(shape: tuple[int, ...], affine, path) -> tuple[tuple[int, int, int], np.ndarray]:
    """Voxel axes mapped to world (x, y, z) = (R, A, S), and each axis's flip, for a 2-D or 3-D image."""
    import nibabel as nib

    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (2, 3):
        raise CTReadError(path, f"expected a 2-D slice or a 3-D volume, got a NIfTI image shaped {shape}.")
    ornt = nib.io_orientation(np.asarray(affine))
    if not np.isfinite(ornt).all():
        raise CTReadError(path, "the NIfTI affine is degenerate; the slice orientation cannot be found.")
    axes = [int(np.flatnonzero(ornt[:, 0] == w)[0]) for w in range(3)]  # voxel axis for R, A, S
    return tuple(axes), ornt[:, 1]


def _nifti_n_slices(path: str) -> int:
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as err:  # noqa: BLE001 - nibabel raises several types for bad headers
        raise CTReadError(path, f"not a readable NIfTI file ({type(err).__name__}: {err})") from err
    if len(img.shape) == 2:
        return 1
    (_, _, ax_s), _ = _nifti_layout(img.shape, img.affine, path)
    return int(img.shape[ax_s])


def _read_nifti_slice(path: str, index: int) -> tuple[np.ndarray, tuple[float, float]]:
    data, slope, inter, affine, zooms = _nifti_volume(path, os.path.getmtime(path))
    if data.ndim == 2:
        data = data[..., None]
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    (ax_r, ax_a, ax_s), flips = _nifti_layout(data.shape, affine, path)
    k = index if flips[ax_s] > 0 else data.shape[ax_s] - 1 - index  # ascending S
    sl = np.take(data, k, axis=ax_s)  # remaining axes in voxel order
    rest = [a for a in range(3) if a != ax_s]
    sl = sl.T if rest.index(ax_a) == 1 else sl  # -> (A-axis, R-axis)
    if flips[ax_a] > 0:  # voxel index runs anterior-ward: flip so rows run posterior-ward
        sl = sl[::-1]
    if flips[ax_r] > 0:  # voxel index runs right-ward: flip so columns run left-ward
        sl = sl[:, ::-1]
    hu = np.ascontiguousarray(sl, dtype=np.float32) * np.float32(slope) + np.float32(inter)
    z = list(zooms) + [1.0] * (3 - len(zooms))
    return hu.astype(np.float32), (float(z[ax_a]), float(z[ax_r]))


# ---------------------------------------------------------------------------------------------------
# value units of NIfTI files (DICOM is HU by its RescaleSlope/RescaleIntercept)
# ---------------------------------------------------------------------------------------------------
#: Units a NIfTI volume's values can be read in: Hounsfield units, or linear attenuation μ in cm⁻¹.
VALUE_UNITS = ("hu", "mu")
#: μ in cm⁻¹ lies here (0.1st to 99.9th percentile): air 0, water about 0.2, bone below 1, metals a
#: few cm⁻¹ at diagnostic energies. An HU image spans far more (air alone is −1000 HU).
_MU_RANGE = (-1.0, 10.0)
#: ... and its 99.9th percentile reaches this (cm⁻¹): an image of μ holds something that attenuates.
_MU_MIN_PEAK = 0.05
#: Every value of a CT image in HU or μ lies here: the range of 16-bit stored CT data.
_CT_RANGE = (-32768.0, 65535.0)
_UNIT_WORDS = {"hu": "Hounsfield units (HU)", "mu": "linear attenuation μ in cm⁻¹"}


def guess_value_unit(values) -> str | None:
    """Which unit CT values look like: ``"mu"`` (cm⁻¹), ``"hu"``, or ``None`` (implausible for CT).

    ``"mu"`` when the 0.1st and 99.9th percentiles of the finite values lie in [−1, 10] cm⁻¹ and the
    99.9th is at least 0.05 cm⁻¹ (something attenuates: water is about 0.2); ``None`` when any finite
    value lies outside [−32768, 65535] (no 16-bit CT data does, in HU or μ); else ``"hu"``. So an image
    of all zeros reads as HU (uniform water), and one of water in HU without noise or air (all within
    [0.05, 10]) as μ: pass the unit explicitly for such test images.

    Args:
        values: array of any shape (non-finite values are ignored).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    if v.min() < _CT_RANGE[0] or v.max() > _CT_RANGE[1]:
        return None
    lo, hi = np.percentile(v, [0.1, 99.9])
    return "mu" if _MU_RANGE[0] <= lo and _MU_MIN_PEAK <= hi <= _MU_RANGE[1] else "hu"


def check_nifti_unit(path, unit: str = "hu", *, max_values: int = 4_000_000) -> None:
    """Refuse a NIfTI volume whose values do not look like ``unit`` (see :func:`guess_value_unit`).

    The whole volume is read once (a strided sample of at most ``max_values`` voxels is classified);
    ``scl_slope``/``scl_inter`` are applied. A file that cannot be read is left to the slice reader,
    which reports it.

    Args:
        path: NIfTI file.
        unit: ``"hu"`` (default) or ``"mu"``.

    Raises:
        CTReadError: the values look like the other unit, or like neither; the message names the file,
            the unit they look like, and the options that fix it.
        ValueError: an unknown ``unit``.
    """
    if unit not in VALUE_UNITS:
        raise ValueError(f"check_nifti_unit: `unit` must be one of {VALUE_UNITS}, got {unit!r}.")
    path = str(path)
    try:
        data, slope, inter, *_ = _nifti_volume(path, os.path.getmtime(path))
    except (CTReadError, OSError):
        return
    flat = np.asarray(data).ravel(order="K")
    step = max(1, flat.size // max_values)
    values = flat[::step].astype(np.float64) * slope + inter
    guess = guess_value_unit(values)
    if guess == unit:
        return
    finite = values[np.isfinite(values)]
    if guess is None:
        span = f"min {finite.min():.4g}, max {finite.max():.4g}" if finite.size else "no finite value"
        raise CTReadError(path, (
            f"values are implausible for CT in HU or cm⁻¹ ({span}; HU lie within about [-3024, 31000], μ within "
            "[0, 10] cm⁻¹): check the file's scaling (scl_slope, scl_inter). Pass --force-unit "
            "(build_dataset(check_unit=False)) to use them anyway."))
    lo, hi = np.percentile(finite, [0.1, 99.9])
    fix = ("pass --input-unit mu (DatasetConfig(input_unit='mu')) to read them as μ" if guess == "mu"
           else "drop --input-unit mu (HU is the default)")
    raise CTReadError(path, (
        f"values look like {_UNIT_WORDS[guess]}, not {_UNIT_WORDS[unit]} (0.1st to 99.9th percentile "
        f"{lo:.4g} to {hi:.4g}; water is 0 HU, about 0.2 cm⁻¹): {fix}, or pass --force-unit "
        f"(build_dataset(check_unit=False)) to read them as {unit.upper() if unit == 'hu' else 'μ'} anyway."))


# ---------------------------------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------------------------------
def _is_nifti(path: str) -> bool:
    return path.lower().endswith(NIFTI_SUFFIXES)


def _looks_like_dicom(path: str) -> bool:
    name = os.path.basename(path)
    if name.upper() == "DICOMDIR":
        return False
    if name.lower().endswith(DICOM_SUFFIXES):
        return True
    if "." in name:  # other extensions (.json, .txt, .png...) are not CT
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


@dataclass
class CTInventory:
    """What :func:`find_ct` found: readable volumes, and files skipped with their reason."""

    sources: list[CTSource]
    failures: list[ReadFailure]

    @property
    def n_slices(self) -> int:
        return sum(s.n_slices for s in self.sources)

    def __iter__(self) -> Iterator[tuple[CTSource, int]]:
        """``(source, slice index)`` pairs in a stable order (by source id, then slice)."""
        for src in self.sources:
            for i in range(src.n_slices):
                yield src, i


def find_ct(path) -> CTInventory:
    """Find CT volumes at ``path``: a DICOM file, a NIfTI file, or a folder searched recursively.

    Folders may mix DICOM series (``.dcm``/``.dicom``/``.ima`` files, or extension-less files with the
    ``DICM`` marker; grouped by ``SeriesInstanceUID`` and sorted by ``ImagePositionPatient`` along the
    slice normal, else by ``InstanceNumber``) and NIfTI volumes (``.nii``, ``.nii.gz``). Hidden files and
    other extensions are ignored. Only headers are read here; pixels are read slice by slice with
    :meth:`CTSource.read_slice`.

    Args:
        path: file or folder.

    Returns:
        :class:`CTInventory` with sources sorted by ``source_id``; unreadable files (corrupt, not an
        image, not CT, no pixel spacing) are listed in ``failures`` rather than raised.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: two volumes would get the same ``source_id``.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"find_ct: `path` does not exist, got {str(path)!r}.")
    if root.is_file():
        files, base = [str(root)], root.parent
    else:
        files, base = [], root
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith("."))
    failures: list[ReadFailure] = []
    sources: list[CTSource] = []
    dicom_files = []
    for f in files:
        if _is_nifti(f):
            rel = os.path.relpath(f, base)
            stem = re.sub(r"\.nii(\.gz)?$", "", rel, flags=re.IGNORECASE)
            sid = _safe(stem.replace(os.sep, "__"))
            try:
                n = _nifti_n_slices(f)
            except CTReadError as err:
                failures.append(ReadFailure(err.path, err.reason))
                continue
            sources.append(CTSource("nifti", sid, sid, (f,), n))
        elif root.is_file() or _looks_like_dicom(f):
            dicom_files.append(f)
    sources.extend(_dicom_sources(dicom_files, failures))
    sources.sort(key=lambda s: s.source_id)
    ids = [s.source_id for s in sources]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"find_ct: several volumes map to the same source id {dup!r}; rename the files.")
    return CTInventory(sources, failures)


def iter_ct_slices(path, *, skip_errors: bool = False) -> Iterator[CTSlice]:
    """Yield every axial slice under ``path`` (see :func:`find_ct`) in HU, volume by volume.

    Args:
        path: a DICOM file or series folder, a NIfTI file, or a folder of them.
        skip_errors: skip unreadable files and slices instead of raising.

    Raises:
        CTReadError: an unreadable file or slice (unless ``skip_errors``).
    """
    inv = find_ct(path)
    if inv.failures and not skip_errors:
        f = inv.failures[0]
        raise CTReadError(f.path, f.reason)
    for src, i in inv:
        try:
            yield src.read_slice(i)
        except CTReadError:
            if not skip_errors:
                raise
