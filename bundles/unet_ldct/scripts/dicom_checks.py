# Generated from bundles/common/dicom_checks.py by `python bundles/common/sync.py`: edit it there, not here.
"""DICOM input checks from headers alone, before any pixel is decoded or output written.

:func:`find_series` / :func:`validate_series` raise :class:`DicomSeriesError` naming the file and the problem:
another modality, two slices at one position, slices of different size, spacing or orientation, pixel data
shorter than the header says (a truncated copy), a transfer syntax no installed pydicom decoder reads. MONAI's
readers stack whatever a folder holds, and a truncated file fails half-way through a run, after other outputs
were written. Missing slices and uneven spacing are accepted (the bundles denoise slice by slice); a folder
holding several series gives one :class:`SeriesInfo` per series. Needs pydicom (>= 3) for DICOM only.

Units: lengths in mm.
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from monai.utils import optional_import

pydicom, _ = optional_import("pydicom")  # needed only for DICOM; NIfTI inference works without it

__all__ = ["DicomSeriesError", "SeriesInfo", "SPACING_RTOL", "GEOMETRY_ATOL", "is_dicom_file", "dicom_files",
           "is_dicom_input", "list_inputs", "find_series", "validate_series"]

#: Slice gaps may differ from the series' slice spacing by this fraction before they count as uneven.
SPACING_RTOL = 0.02
#: Tolerance of PixelSpacing (mm) and direction cosines between slices of one series.
GEOMETRY_ATOL = 1e-3
_DICOMDIR = "1.2.840.10008.1.3.10"
_PIXEL_DATA, _UNDEFINED_LENGTH = 0x7FE00010, 0xFFFFFFFF


class DicomSeriesError(ValueError):
    """A DICOM input that the bundle cannot read as one CT volume; the message names the file and the fix."""


@dataclass
class SeriesInfo:
    """A validated series, sorted ascending along the slice normal.

    Attributes:
        files, datasets: the slices' paths and headers (without pixel data).
        series_uid: SeriesInstanceUID.
        positions_mm: slice positions along the normal, mm.
        spacing_mm: distance between the closest slices, mm (``None`` for one slice).
        reader_files: the files in the order ``PydicomReader`` stacks them (by InstanceNumber).
        irregular: ``""``, or what is uneven (missing slices, uneven gaps), for messages.
        name: output name: the folder's (one series), ``<folder>_series<N>`` (one of several; plus 8 hex
            digits of the UID's SHA-1 where two share a SeriesNumber), or a single file's stem.
        source: the input that reads exactly this series: the path given, or the list of its files.
    """

    files: list[str]
    datasets: list
    series_uid: str
    positions_mm: list[float]
    spacing_mm: float | None
    reader_files: list[str] = field(default_factory=list)
    irregular: str = ""
    name: str = ""
    source: str | list[str] = ""


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file named ``*.dcm`` or with the DICOM preamble (``DICM`` at byte 128)."""
    path = os.fspath(path)
    if not os.path.isfile(path) or path.lower().endswith(".dcm"):
        return os.path.isfile(path)
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def dicom_files(folder: str | os.PathLike, recursive: bool = False) -> list[str]:
    """Sorted paths of the DICOM files in ``folder`` (and its subfolders with ``recursive``)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    pattern = os.path.join(glob.escape(folder), "**", "*") if recursive else os.path.join(glob.escape(folder), "*")
    return sorted(p for p in glob.glob(pattern, recursive=recursive) if is_dicom_file(p))  # glob skips hidden files


def is_dicom_input(path) -> bool:
    """Whether an input is DICOM: a DICOM file, a folder with DICOM files directly inside, or a list of DICOM files."""
    if isinstance(path, (list, tuple)):
        return bool(path) and all(isinstance(p, (str, os.PathLike)) and is_dicom_file(p) for p in path)
    return isinstance(path, (str, os.PathLike)) and (is_dicom_file(path) or bool(dicom_files(path)))


def list_inputs(path: str | os.PathLike, suffixes: Sequence[str], recursive: bool = False) -> list[str]:
    """Inference inputs under ``path``, sorted: image files, and folders of DICOM files (one series input each).

    A folder whose images are all DICOM is one input; DICOM files lying next to other images (``suffixes``,
    lower case) are read one by one. Subfolders are searched one level down, or at any depth with ``recursive``.
    """
    path = os.fspath(path)
    if os.path.isfile(path) or not os.path.isdir(path):
        return [path] if os.path.isfile(path) else []
    ends = tuple(s.lower() for s in suffixes)

    def items(folder: str) -> list[str]:
        files = [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
        dcm = [f for f in files if is_dicom_file(f) and not os.path.basename(f).startswith(".")]
        is_dcm = set(dcm)
        other = [f for f in files if f not in is_dcm and os.path.isfile(f) and f.lower().endswith(ends)]
        return other + dcm if other else ([folder] if dcm else [])

    found = items(path)
    for root, dirs, _ in os.walk(path) if recursive else [(path, sorted(os.listdir(path)), [])]:
        subs = [os.path.join(root, d) for d in dirs]
        found += [i for s in subs if os.path.isdir(s) for i in (items(s) if recursive else ([s] if dicom_files(s) else []))]
    return sorted(found)


def _describe(ds) -> str:
    number, desc = ds.get("SeriesNumber"), ds.get("SeriesDescription")
    return ", ".join([f"Modality {ds.get('Modality', '?')}"] + ([f"SeriesNumber {number}"] if number not in (None, "") else [])
                     + ([repr(str(desc))] if desc else []))


def _floats(value) -> np.ndarray:
    return np.asarray([float(v) for v in value], dtype=float)


def _normal(ds) -> np.ndarray:
    iop = _floats(ds.ImageOrientationPatient)
    return np.cross(iop[:3], iop[3:])


def _stem(path: str) -> str:
    """A DICOM file's name without ``.dcm``/``.dicom``/``.ima`` (other dots kept: UID-named files)."""
    base = os.path.basename(os.path.normpath(path))
    return next((base[: -len(e)] for e in (".dcm", ".dicom", ".ima") if base.lower().endswith(e) and len(base) > len(e)), base)


def _read_header(path: str):
    """The header of one file, its PixelData checked complete but not read (large values deferred); ``None`` for a DICOMDIR."""
    try:
        ds = pydicom.dcmread(path, defer_size=1024, force=True)
    except Exception as e:  # pydicom raises many types for damaged files
        raise DicomSeriesError(f"{path}: cannot be read as DICOM ({type(e).__name__}: {e}).") from e
    if str(ds.get("SOPClassUID", "")) == _DICOMDIR:
        return None
    if _PIXEL_DATA not in ds:
        raise DicomSeriesError(f"{path}: has no PixelData; it is not an image slice.")
    elem = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    length, tell = getattr(elem, "length", None), getattr(elem, "value_tell", None)
    if length is None:  # small enough to be read, not deferred
        length, tell = len(elem.value or b""), None
    del ds[_PIXEL_DATA]
    if length == _UNDEFINED_LENGTH:
        return ds  # encapsulated (compressed) frames: their size is known only by decoding them
    if tell is not None and os.path.getsize(path) - int(tell) < length:
        raise DicomSeriesError(
            f"{path}: truncated: its PixelData element declares {length} bytes but the file holds only "
            f"{max(os.path.getsize(path) - int(tell), 0)} of them (the file was cut short, e.g. an interrupted copy). "
            "Copy it again from the source.")
    try:
        dims = [int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("NumberOfFrames", 1) or 1)]
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return ds  # missing geometry is reported by the series checks
    if length < (math.prod(dims) * bits + 7) // 8:
        raise DicomSeriesError(
            f"{path}: the pixel data are incomplete: {length} bytes, but Rows {dims[0]} × Columns {dims[1]} × "
            f"SamplesPerPixel {dims[2]} × {dims[3]} frame(s) at BitsAllocated {bits} need "
            f"{(math.prod(dims) * bits + 7) // 8} bytes. The file is damaged or was cut short; copy it again from the source.")
    return ds


def _check_transfer_syntax(path: str, ds) -> None:
    """Refuse a transfer syntax that no installed pydicom pixel data handler decodes."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    uid = UID(str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "1.2.840.10008.1.2.1")))
    name = f"{uid.name} ({uid})" if uid.name != str(uid) else str(uid)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise DicomSeriesError(
            f"{path}: transfer syntax {name} has no pixel data decoder in pydicom {pydicom.__version__}; convert the "
            "series to an uncompressed transfer syntax first (e.g. `gdcmconv --raw IN OUT`).") from None
    if not decoder.is_available:
        raise DicomSeriesError(
            f"{path}: transfer syntax {name} is compressed and none of the installed pydicom pixel data handlers can "
            f"decode it. Install one of: {'; '.join(decoder.missing_dependencies) or 'a pixel data plugin'} (e.g. "
            "`pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg`), or decompress it (`gdcmconv --raw IN OUT`).")


def find_series(path: str | os.PathLike | Sequence[str], modality: str = "CT", recursive: bool = False) -> list[SeriesInfo]:
    """Every DICOM series in ``path`` (a folder, a file or a list of files), each validated; nothing is decoded.

    Returns one :class:`SeriesInfo` per SeriesInstanceUID, by SeriesNumber then first file, with its ``name``
    and ``source``. Raises :class:`DicomSeriesError` (see :func:`validate_series`) for the first that fails.
    """
    if isinstance(path, (str, os.PathLike)):
        path = where = os.fspath(path)
        files = dicom_files(path, recursive) if os.path.isdir(path) else [path] if os.path.isfile(path) else None
        if files is None:
            raise DicomSeriesError(f"{path}: no such file or folder.")
    else:
        files = [os.fspath(p) for p in path]
        where = os.path.dirname(files[0]) if files else "the given list"
    if int(str(getattr(pydicom, "__version__", "0")).split(".")[0]) < 3:  # getattr raises OptionalImportError when absent
        raise ImportError(f"DICOM input and output need pydicom >= 3.0 (installed: {pydicom.__version__}).")
    groups: dict[str, list] = {}
    for p in files:
        ds = _read_header(p)
        if ds is not None:
            groups.setdefault(str(ds.get("SeriesInstanceUID", "<no SeriesInstanceUID>")), []).append((p, ds))
    if not groups:
        raise DicomSeriesError(f"{where}: no DICOM image files found (looked for files with the DICM preamble or .dcm).")

    def number(items) -> tuple:
        try:
            return (0, int(items[0][1].get("SeriesNumber")), items[0][0])
        except (TypeError, ValueError):
            return (1, 0, items[0][0])

    ordered = sorted(groups.items(), key=lambda kv: number(kv[1]))
    several = len(ordered) > 1 or not isinstance(path, str)  # a list of files is one series of a folder
    base = _stem(path) if isinstance(path, str) and os.path.isfile(path) else os.path.basename(os.path.normpath(where))
    tags = [f"series{n[1]}" if n[0] == 0 else hashlib.sha1(uid.encode()).hexdigest()[:8]
            for uid, items in ordered for n in [number(items)]]
    infos = []
    for (uid, items), tag in zip(ordered, tags):
        info = _validate_group(where if len(ordered) == 1 else f"{where} (series {uid})", items, modality)
        if tags.count(tag) > 1:  # two series with one SeriesNumber (e.g. from two studies): add the UID's hash
            tag = f"{tag}_{hashlib.sha1(uid.encode()).hexdigest()[:8]}"
        info.name, info.source = (f"{base}_{tag}", [p for p, _ in items]) if several else (base, path)
        infos.append(info)
    return infos


def validate_series(path: str | os.PathLike | Sequence[str], modality: str = "CT", recursive: bool = False) -> SeriesInfo:
    """Check that ``path`` holds exactly one readable single-frame CT series; nothing is decoded.

    Raises:
        DicomSeriesError: no DICOM file; an unreadable or truncated file; several series (use
            :func:`find_series`); another modality; multi-frame, colour or Modality-LUT images; missing
            geometry; slices of different size, spacing or orientation; two slices at one position;
            InstanceNumbers out of step with the positions; an undecodable transfer syntax.
    """
    infos = find_series(path, modality=modality, recursive=recursive)
    if len(infos) > 1:
        lines = [f"  {i.series_uid}: {len(i.files)} file(s), {_describe(i.datasets[0])}, e.g. {i.files[0]}" for i in infos]
        raise DicomSeriesError(
            f"{os.fspath(path) if isinstance(path, (str, os.PathLike)) else 'the given files'}: holds {len(infos)} DICOM "
            "series where one is expected here (one SeriesInstanceUID); the bundles' inference configs give each "
            "series its own output. Series found:\n" + "\n".join(lines))
    return infos[0]


def _check_slice(p: str, ds, first, first_path: str, where: str, modality: str) -> None:
    """One slice's header against the series' first slice."""
    if str(ds.get("Modality", "")) != modality:
        raise DicomSeriesError(f"{where}: Modality is {str(ds.get('Modality', ''))!r} ({_describe(ds)}); this bundle "
                               f"denoises {modality} images only. Pass a {modality} series.")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise DicomSeriesError(f"{p}: a multi-frame image ({ds.NumberOfFrames} frames, e.g. Enhanced CT) is not "
                               "supported; convert it to single-frame CT slices first (e.g. dcm4che's `emf2sf`).")
    if "ModalityLUTSequence" in ds or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise DicomSeriesError(f"{p}: only grey-scale slices (SamplesPerPixel 1) with RescaleSlope/RescaleIntercept "
                               "are supported, not colour or a Modality LUT Sequence.")
    for kw in ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient"):
        if ds.get(kw) in (None, ""):
            raise DicomSeriesError(f"{p}: has no {kw}; the slice geometry cannot be known, so the series cannot be "
                                   "denoised or written back.")
    if (int(ds.Rows), int(ds.Columns)) != (int(first.Rows), int(first.Columns)):
        a, b = sorted([((int(first.Rows), int(first.Columns)), first_path), ((int(ds.Rows), int(ds.Columns)), p)])
        raise DicomSeriesError(f"{where}: slices of different size (Rows × Columns) in one series: {a[0][0]}×{a[0][1]} "
                               f"(e.g. {a[1]}), {b[0][0]}×{b[0][1]} (e.g. {b[1]}). Which slices belong together is "
                               "ambiguous; pass slices of one size (one reconstruction) per series.")
    for kw, n in (("PixelSpacing", 2), ("ImageOrientationPatient", 6)):
        a, b = _floats(first.get(kw)), _floats(ds.get(kw))
        if b.shape != (n,) or not np.allclose(a, b, atol=GEOMETRY_ATOL, rtol=0):
            raise DicomSeriesError(f"{where}: inconsistent {kw} in one series: {a.tolist()} in {first_path}, "
                                   f"{b.tolist()} in {p}.")


def _irregular(pos: np.ndarray) -> tuple[float | None, str]:
    """(closest spacing, description of missing slices or uneven gaps) of sorted positions (mm)."""
    if len(pos) < 2:
        return None, ""
    gaps = np.diff(pos)
    spacing = float(gaps.min())
    k = np.rint(gaps / spacing)
    uneven = np.flatnonzero(np.abs(gaps - k * spacing) > SPACING_RTOL * spacing * k)
    missing = [pos[i] + j * spacing for i in range(len(gaps)) for j in range(1, int(k[i]))]
    if uneven.size:
        shown = ", ".join(f"{gaps[i]:.4g} mm after {pos[i]:.3f} mm" for i in uneven[:5])
        more = f" and {uneven.size - 5} more" if uneven.size > 5 else ""
        return spacing, f"uneven slice spacing: the closest slices are {spacing:.4g} mm apart, but there are gaps of {shown}{more}"
    if missing:
        shown = ", ".join(f"{m:.3f}" for m in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        return spacing, (f"{len(missing)} missing slice(s): slices are {spacing:.4g} mm apart, but none is at {shown} mm "
                         "along the slice normal (ImagePositionPatient · normal)")
    return spacing, ""


def _validate_group(where: str, items: list, modality: str) -> SeriesInfo:
    """Validate the (path, header) pairs of one SeriesInstanceUID; see :func:`validate_series`."""
    first_path, first = items[0]
    for p, ds in items:
        _check_slice(p, ds, first, first_path, where, modality)
    normal = _normal(first)
    pos = np.asarray([float(np.dot(_floats(ds.ImagePositionPatient), normal)) for _, ds in items])
    order = np.argsort(pos, kind="stable")
    files, datasets, pos = [items[i][0] for i in order], [items[i][1] for i in order], pos[order]
    dup = np.flatnonzero(np.diff(pos) <= GEOMETRY_ATOL)
    if dup.size:
        i = int(dup[0])
        raise DicomSeriesError(f"{where}: two slices at the same position {pos[i]:.3f} mm along the slice normal "
                               f"({files[i]} and {files[i + 1]}); a folder must hold one copy of one series.")
    reader_files = list(files)
    if len(files) > 1:  # PydicomReader stacks by InstanceNumber: it must follow the positions
        bad = next((f for f, ds in zip(files, datasets) if ds.get("InstanceNumber") in (None, "")), None)
        if bad:
            raise DicomSeriesError(f"{bad}: has no InstanceNumber, which the DICOM reader needs to stack the slices.")
        steps = np.diff([int(ds.InstanceNumber) for ds in datasets])
        if not (np.all(steps > 0) or np.all(steps < 0)):
            raise DicomSeriesError(
                f"{where}: InstanceNumbers {[int(ds.InstanceNumber) for ds in datasets]} do not follow the slice positions "
                "(in position order); MONAI's PydicomReader stacks slices by InstanceNumber, so renumber them along the table.")
        reader_files = files if steps[0] > 0 else files[::-1]
    syntaxes = {str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "")): (p, ds) for p, ds in zip(files, datasets)}
    for p, ds in syntaxes.values():
        _check_transfer_syntax(p, ds)
    spacing, irregular = _irregular(pos)
    uid = str(first.get("SeriesInstanceUID", "<no SeriesInstanceUID>"))
    return SeriesInfo(files, datasets, uid, pos.tolist(), spacing, reader_files, irregular)
