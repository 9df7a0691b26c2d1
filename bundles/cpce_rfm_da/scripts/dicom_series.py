"""DICOM CT series in and out for the inference config: validation, a loader, a writer.

This file is copied byte for byte into every bundle of the repository (each bundle must stand alone in
the model zoo); a test checks that the copies agree. It needs pydicom, numpy, torch and MONAI only.

* :func:`find_series` and :func:`validate_series` check DICOM input from its headers before any pixel
  is decoded or any output written, and raise :class:`DicomSeriesError` (a ``ValueError``) naming the
  file and the problem: a modality other than CT, two slices at one position, slices of different size,
  pixel spacing or orientation within a series, pixel data shorter than the header says (a truncated
  copy), a transfer syntax that the installed pydicom pixel data handlers cannot decode. The bundles
  denoise each slice on its own, so single slices, missing slices and uneven spacing are accepted, and
  a folder holding several series gives one input per series (:func:`check_inputs`).
* :class:`LoadImageSeriesd` is ``LoadImaged`` for configs: a DICOM series folder (or file) is
  validated, read by MONAI's ``PydicomReader`` (which applies RescaleSlope/RescaleIntercept: HU) and
  converted to the config's unit (HU, or attenuation in cm⁻¹ by μ = (HU/1000 + 1)·μ_water); any other
  path goes to ``LoadImaged`` unchanged. The source files ride along in the MetaTensor's meta.
* :func:`write_dicom_series` writes a float HU volume as a derived CT series next to its source, and
  :class:`SaveImageSeriesd` is ``SaveImaged`` for configs that writes NIfTI (as ``SaveImaged``) or,
  with ``output_format="dicom"``, a DICOM series per input. An existing output folder is never replaced:
  the series is written beside it under a free name (``<name>_2``, ...), and the log says so.

Why some of this is written by hand: MONAI's readers and MONAI Deploy's loader group or stack whatever a
folder holds (PydicomReader warns at most, then stacks by InstanceNumber), so a mixed folder would
silently give a wrong volume and a truncated file fails halfway through a run, after other outputs were
written; the checks here run on headers only, before any pixel is decoded.
The writer copies each source slice's header with pydicom rather than using highdicom, whose
``highdicom.legacy`` converters make Enhanced (multi-frame) CT objects: single-frame CT Image Storage
next to the source series is what every viewer and PACS reads.

Units: Hounsfield units (HU), attenuation μ in cm⁻¹, lengths in mm.
"""

from __future__ import annotations

import copy
import datetime
import glob
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, PydicomReader
from monai.transforms import LoadImage, LoadImaged, SaveImaged
from monai.utils import optional_import

# pydicom is needed only when DICOM is read or written; NIfTI inference works without it.
pydicom, _ = optional_import("pydicom")

__all__ = [
    "DicomSeriesError",
    "SeriesInfo",
    "MU_WATER_60KEV",
    "SOURCE_UNIT_KEY",
    "DICOM_FILES_KEY",
    "OUTPUT_NAME_KEY",
    "is_dicom_file",
    "dicom_files",
    "is_dicom_input",
    "list_inputs",
    "find_series",
    "validate_series",
    "check_inputs",
    "sort_by_position",
    "choose_rescale",
    "write_dicom_series",
    "bundle_descriptions",
    "LoadImageSeriesd",
    "SaveImageSeriesd",
]

logger = logging.getLogger(__name__)


def _quiet_absent_gpu_dicom_decoder() -> None:
    """Silence the two lines MONAI 1.6 prints on every ``LoadImage`` when nvImageCodec is absent.

    ``LoadImage`` builds every default reader, ``NvImgCodecPydicomReader`` among them, and that reader logs a
    warning and raises a ``UserWarning`` each time its optional GPU decoder is missing, which it always is
    on CPU. The bundles read DICOM with ``PydicomReader`` and never use it, so exactly those two messages
    are dropped; every other warning stays.
    """
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader: nvImageCodec decoder plugin", category=UserWarning)


_quiet_absent_gpu_dicom_decoder()

#: Water's linear attenuation in cm⁻¹ at 60 keV, the bundles' default ``mu_water``.
MU_WATER_60KEV = 0.2059
#: Meta key holding the unit the source file stores (``"hu"`` for DICOM, else the config's unit).
SOURCE_UNIT_KEY = "source_unit"
#: Meta key holding a JSON list of the source DICOM files, in the order of the volume's last axis.
DICOM_FILES_KEY = "dicom_files"
#: Meta key holding the output name of a DICOM input (``<folder>``, ``<folder>_series<N>``, ``<file stem>``).
OUTPUT_NAME_KEY = "output_name"
#: Slice gaps may differ from the series' slice spacing by this fraction before they count as uneven.
SPACING_RTOL = 0.02
#: Tolerance of PixelSpacing (mm) and direction cosines when comparing slices of one series.
GEOMETRY_ATOL = 1e-3
#: SOP classes that are never image slices (DICOMDIR).
_IGNORED_SOP_CLASSES = ("1.2.840.10008.1.3.10",)
_UNITS = ("mu", "hu")
_FORMATS = ("nifti", "dicom")


class DicomSeriesError(ValueError):
    """A DICOM input that the bundle cannot read as one CT volume; the message names the problem and the fix."""


@dataclass
class SeriesInfo:
    """A validated series: files and header datasets sorted by position along the slice normal (ascending).

    Attributes:
        files: paths of the slices, ascending along the slice normal.
        datasets: their headers (pydicom datasets without pixel data), same order.
        series_uid: SeriesInstanceUID.
        positions_mm: slice positions along the normal, mm, same order.
        spacing_mm: distance between the closest neighbouring slices, mm (``None`` for one slice).
        reader_files: the files in the order MONAI's ``PydicomReader`` stacks them (by InstanceNumber).
        irregular: ``""`` when the slices are evenly spaced (or one slice); else what is uneven (missing
            slices, uneven gaps), for messages. The bundles denoise slice by slice and accept such series;
            only a volume format with one slice spacing (NIfTI) cannot hold them.
        name: the output name of this series: the folder's name for a folder holding one series,
            ``<folder>_series<SeriesNumber>`` (``<folder>_<8 hex digits of the UID's SHA-1>`` without a
            SeriesNumber; both where two series share one) for one of several series in a folder, the
            file name without ``.dcm``/``.dicom``/``.ima`` for a single file.
        source: the input that reads exactly this series: the folder or file given, or (one of several
            series in a folder) the list of its files.
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


# ---------------------------------------------------------------------------------------------------------
# finding DICOM files


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file with the DICOM preamble (``DICM`` at byte 128) or a ``.dcm`` name."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    if path.lower().endswith(".dcm"):
        return True
    try:  # PS3.10 file: 128-byte preamble then "DICM" (what pydicom.misc.is_dicom checks, without needing pydicom)
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def dicom_files(folder: str | os.PathLike, recursive: bool = False) -> list[str]:
    """Sorted paths of the DICOM files in ``folder`` (its subfolders too with ``recursive``)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    pattern = os.path.join(glob.escape(folder), "**", "*") if recursive else os.path.join(glob.escape(folder), "*")
    return sorted(p for p in glob.glob(pattern, recursive=recursive) if is_dicom_file(p))


def is_dicom_input(path) -> bool:
    """Whether an inference input is DICOM: a DICOM file, a folder with DICOM files directly inside, or a
    non-empty list of DICOM files (one series of a folder holding several, as :func:`check_inputs` makes)."""
    if isinstance(path, (list, tuple)):
        return bool(path) and all(isinstance(p, (str, os.PathLike)) and is_dicom_file(p) for p in path)
    if not isinstance(path, (str, os.PathLike)):
        return False
    path = os.fspath(path)
    return is_dicom_file(path) if os.path.isfile(path) else bool(dicom_files(path))


def list_inputs(path: str | os.PathLike, suffixes: Sequence[str], recursive: bool = False) -> list[str]:
    """Inference inputs under ``path``: image files and DICOM series folders, sorted by path.

    ``path`` may be an image file; a DICOM series folder (a folder whose images are all DICOM: one
    input); or a folder of images and series folders, where each subfolder holding DICOM files is one
    series (searched to any depth with ``recursive``, else one level down). DICOM files lying next to
    other images (NIfTI, ...) in one folder are read one by one.

    Args:
        path: file or folder.
        suffixes: file endings read as images (lower case, e.g. ``(".nii.gz", ".nii", ".dcm")``).
        recursive: look for images and series in subfolders at any depth.

    Returns:
        The input paths (files and folders).
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        return []
    suffixes = tuple(s.lower() for s in suffixes)

    def images(folder: str) -> tuple[list[str], list[str]]:
        names = sorted(os.listdir(folder))
        files = [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]
        dcm = [f for f in files if is_dicom_file(f)]
        is_dcm = set(dcm)
        other = [f for f in files if f not in is_dcm and f.lower().endswith(suffixes)]
        return dcm, other

    def items(folder: str) -> list[str]:
        dcm, other = images(folder)
        return other + (dcm if other else ([folder] if dcm else []))

    found = items(path)
    if recursive:
        for root, dirs, _ in os.walk(path):
            for d in dirs:
                found += items(os.path.join(root, d))
    else:
        for name in sorted(os.listdir(path)):
            sub = os.path.join(path, name)
            if os.path.isdir(sub) and dicom_files(sub):
                found.append(sub)
    return sorted(found)


# ---------------------------------------------------------------------------------------------------------
# validation


def _describe(ds) -> str:
    parts = [f"Modality {ds.get('Modality', '?')}"]
    if ds.get("SeriesNumber") not in (None, ""):
        parts.append(f"SeriesNumber {ds.SeriesNumber}")
    if ds.get("SeriesDescription"):
        parts.append(repr(str(ds.SeriesDescription)))
    return ", ".join(parts)


def _normal(ds) -> np.ndarray:
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
    return np.cross(iop[:3], iop[3:])


def _check_transfer_syntax(files: Sequence[str], datasets: Sequence) -> None:
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    checked: set[str] = set()
    for path, ds in zip(files, datasets):
        meta = getattr(ds, "file_meta", None)
        tsuid = meta.get("TransferSyntaxUID") if meta is not None else None
        if tsuid is None or str(tsuid) in checked:
            continue
        checked.add(str(tsuid))
        tsuid = UID(str(tsuid))
        name = f"{tsuid.name} ({tsuid})" if tsuid.name != str(tsuid) else str(tsuid)
        try:
            decoder = get_decoder(tsuid)
        except NotImplementedError:
            raise DicomSeriesError(
                f"{path}: transfer syntax {name} has no pixel data decoder in pydicom {pydicom.__version__}; "
                "convert the series to an uncompressed transfer syntax first (e.g. `gdcmconv --raw IN OUT` or "
                "dcmtk's `dcmdjpeg`/`dcmconv +te`)."
            ) from None
        if not decoder.is_available:
            options = "; ".join(decoder.missing_dependencies) or "a pixel data plugin"
            raise DicomSeriesError(
                f"{path}: transfer syntax {name} is compressed and none of the installed pydicom pixel data "
                f"handlers can decode it. Install one of: {options} (e.g. `pip install pylibjpeg pylibjpeg-libjpeg "
                "pylibjpeg-openjpeg` or `pip install python-gdcm`), or decompress the series first "
                "(`gdcmconv --raw IN OUT`)."
            )


def _require_pydicom() -> None:
    version = str(getattr(pydicom, "__version__", "0"))  # getattr raises OptionalImportError when absent
    if int(version.split(".")[0]) < 3:
        raise ImportError(f"DICOM input and output need pydicom >= 3.0 (installed: {version}); `pip install 'pydicom>=3'`.")


def _read_headers(files: Sequence[str]) -> list[tuple[str, object]]:
    """(path, header) of each DICOM image file; pixel data are not read, only checked to be complete.

    Each file is read with its large values deferred (``defer_size``), so the PixelData element's declared
    length and file offset are known without reading it; that is compared with the file size and with
    Rows·Columns·SamplesPerPixel·NumberOfFrames·BitsAllocated/8 (uncompressed data). The PixelData
    element is then dropped from the returned header.
    """
    out = []
    for path in files:
        try:
            ds = pydicom.dcmread(path, defer_size=1024, force=True)
        except Exception as e:  # pydicom raises many types for damaged files
            raise DicomSeriesError(f"{path}: cannot be read as DICOM ({type(e).__name__}: {e}).") from e
        if str(ds.get("SOPClassUID", "")) in _IGNORED_SOP_CLASSES:
            continue
        _check_pixel_data(path, ds)
        if _PIXEL_DATA in ds:
            del ds[_PIXEL_DATA]
        out.append((path, ds))
    return out


_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF


def _check_pixel_data(path: str, ds) -> None:
    """Refuse a file whose pixel data are missing or shorter than its header says (e.g. a cut-short copy)."""
    elem = ds.get_item(_PIXEL_DATA, keep_deferred=True) if _PIXEL_DATA in ds else None
    if elem is None:
        raise DicomSeriesError(f"{path}: has no PixelData; it is not an image slice.")
    length = getattr(elem, "length", None)
    tell = getattr(elem, "value_tell", None)
    if length is None:  # read, not deferred (small image)
        value = elem.value
        length, tell = (len(value) if value is not None else 0), None
    if length == _UNDEFINED_LENGTH:
        return  # encapsulated (compressed) frames: their size is known only by decoding them
    if tell is not None:
        available = os.path.getsize(path) - int(tell)
        if available < length:
            raise DicomSeriesError(
                f"{path}: truncated: its PixelData element declares {length} bytes but the file holds only "
                f"{max(available, 0)} of them (the file was cut short, e.g. an interrupted copy). Copy it again "
                "from the source."
            )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return  # missing geometry is reported by the series checks
    expected = (rows * cols * samples * frames * bits + 7) // 8
    if length < expected:
        raise DicomSeriesError(
            f"{path}: the pixel data are incomplete: {length} bytes, but Rows {rows} × Columns {cols} × "
            f"SamplesPerPixel {samples} × {frames} frame(s) at BitsAllocated {bits} need {expected} bytes. "
            "The file is damaged or was cut short; copy it again from the source."
        )


def _stem(path: str) -> str:
    """A DICOM file's name without a ``.dcm``/``.dicom``/``.ima`` ending (other dots are kept: UID-named files)."""
    base = os.path.basename(os.path.normpath(path))
    for ext in (".dcm", ".dicom", ".ima"):
        if base.lower().endswith(ext) and len(base) > len(ext):
            return base[: -len(ext)]
    return base


def _series_tag(ds, series_uid: str) -> str:
    number = ds.get("SeriesNumber")
    if number not in (None, ""):
        try:
            return f"series{int(number)}"
        except (TypeError, ValueError):
            pass
    return hashlib.sha1(series_uid.encode()).hexdigest()[:8]


def find_series(
    path: str | os.PathLike | Sequence[str], modality: str = "CT", recursive: bool = False
) -> list[SeriesInfo]:
    """Every DICOM series in ``path``, each checked as :func:`validate_series` checks one; nothing is decoded.

    Args:
        path: a folder, one DICOM file, or a list of files.
        modality: the Modality every slice must have. Default ``"CT"``.
        recursive: also read DICOM files in subfolders of a folder.

    Returns:
        One :class:`SeriesInfo` per SeriesInstanceUID, by SeriesNumber (then first file's path). Each has
        its ``name`` (the folder's name when the folder holds one series, else ``<folder>_series<N>``,
        with ``_<8 hex digits of the UID's SHA-1>`` added where two series share a SeriesNumber) and
        ``source`` (the folder or file when it holds one series, else the list of the series' files).

    Raises:
        DicomSeriesError: as :func:`validate_series`, for the first series that fails.
    """
    if isinstance(path, (str, os.PathLike)):
        path = os.fspath(path)
        if os.path.isdir(path):
            files = dicom_files(path, recursive=recursive)
        elif os.path.isfile(path):
            files = [path]
        else:
            raise DicomSeriesError(f"{path}: no such file or folder.")
        where = path
    else:
        files = [os.fspath(p) for p in path]
        where = os.path.dirname(files[0]) if files else "the given list"
    _require_pydicom()
    headers = _read_headers(files)
    if not headers:
        raise DicomSeriesError(f"{where}: no DICOM image files found (looked for files with the DICM preamble or .dcm).")
    groups: dict[str, list] = {}
    for p, ds in headers:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "<no SeriesInstanceUID>")), []).append((p, ds))

    def series_order(kv):
        number = kv[1][0][1].get("SeriesNumber")
        try:
            return (0, int(number), kv[1][0][0])
        except (TypeError, ValueError):
            return (1, 0, kv[1][0][0])

    ordered = sorted(groups.items(), key=series_order)  # by SeriesNumber, then by first file
    if isinstance(path, str) and os.path.isfile(path):
        base = _stem(path)
    else:
        base = os.path.basename(os.path.normpath(where))
    several = len(ordered) > 1 or not isinstance(path, str)  # a list of files is one series of a folder
    tags = [_series_tag(items[0][1], uid) for uid, items in ordered]
    infos = []
    for (uid, items), tag in zip(ordered, tags):
        info = _validate_group(where if len(ordered) == 1 else f"{where} (series {uid})", items, modality)
        if tags.count(tag) > 1:  # two series with one SeriesNumber (e.g. from two studies): add the UID's hash
            tag = f"{tag}_{hashlib.sha1(uid.encode()).hexdigest()[:8]}"
        info.name = f"{base}_{tag}" if several else base
        info.source = [p for p, _ in items] if several else path
        infos.append(info)
    return infos


def validate_series(path: str | os.PathLike | Sequence[str], modality: str = "CT", recursive: bool = False) -> SeriesInfo:
    """Check that ``path`` holds exactly one readable single-frame CT series; nothing is decoded.

    Missing slices and uneven spacing are allowed (the bundles denoise slice by slice); they are
    described in :attr:`SeriesInfo.irregular`.

    Args:
        path: a series folder, one DICOM file, or a list of files.
        modality: the Modality every slice must have. Default ``"CT"``.
        recursive: also read DICOM files in subfolders of a folder.

    Returns:
        A :class:`SeriesInfo` with the files sorted along the slice normal.

    Raises:
        DicomSeriesError: no DICOM file; an unreadable file; pixel data missing or shorter than the header
            says (a truncated file); several SeriesInstanceUIDs (the series found are listed: read such a
            folder with :func:`find_series` or :func:`check_inputs`, which give one input per series);
            another modality; multi-frame or colour images; missing geometry attributes; slices of
            different Rows/Columns/PixelSpacing/ImageOrientationPatient; two slices at one position;
            InstanceNumbers out of step with the positions; a transfer syntax the installed decoders
            cannot read.
    """
    infos = find_series(path, modality=modality, recursive=recursive)
    if len(infos) > 1:
        lines = [f"  {i.series_uid}: {len(i.files)} file(s), {_describe(i.datasets[0])}, e.g. {i.files[0]}" for i in infos]
        raise DicomSeriesError(
            f"{os.fspath(path) if isinstance(path, (str, os.PathLike)) else 'the given files'}: holds {len(infos)} "
            "DICOM series where one is expected here (one SeriesInstanceUID); the bundles' inference configs "
            "give each series its own output. Series found:\n" + "\n".join(lines)
        )
    return infos[0]


def _validate_group(where: str, items: list, modality: str) -> SeriesInfo:
    """Validate the (path, header) pairs of one SeriesInstanceUID; see :func:`validate_series`."""
    series_uid = str(items[0][1].get("SeriesInstanceUID", "<no SeriesInstanceUID>"))
    files = [p for p, _ in items]
    datasets = [ds for _, ds in items]
    first_path, first = items[0]

    mods = sorted({str(ds.get("Modality", "")) for ds in datasets})
    if mods != [modality]:
        raise DicomSeriesError(
            f"{where}: Modality is {' / '.join(repr(m) for m in mods)} ({_describe(first)}); this bundle denoises "
            f"{modality} images only. Pass a {modality} series."
        )
    for p, ds in items:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DicomSeriesError(
                f"{p}: a multi-frame image ({ds.NumberOfFrames} frames, e.g. Enhanced CT) is not supported; "
                "convert it to single-frame CT slices first (e.g. dcm4che's `emf2sf`)."
            )
        if "ModalityLUTSequence" in ds:
            raise DicomSeriesError(
                f"{p}: maps stored values to HU with a Modality LUT Sequence, which the reader does not apply; "
                "only RescaleSlope/RescaleIntercept are supported."
            )
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise DicomSeriesError(f"{p}: SamplesPerPixel is {ds.SamplesPerPixel}; CT slices must be grey-scale (1).")
        for kw in ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient"):
            if ds.get(kw) in (None, ""):
                raise DicomSeriesError(
                    f"{p}: has no {kw}; the slice geometry cannot be known, so the series cannot be denoised "
                    "or written back."
                )
    sizes: dict[tuple[int, int], str] = {}
    for p, ds in items:
        sizes.setdefault((int(ds.Rows), int(ds.Columns)), p)
    if len(sizes) > 1:
        shown = ", ".join(f"{r}×{c} (e.g. {p})" for (r, c), p in sorted(sizes.items()))
        raise DicomSeriesError(
            f"{where}: slices of different size (Rows × Columns) in one series: {shown}. Which slices belong "
            "together is ambiguous; pass slices of one size (one reconstruction) per series."
        )
    ps0 = np.asarray([float(v) for v in first.PixelSpacing])
    iop0 = np.asarray([float(v) for v in first.ImageOrientationPatient])
    for p, ds in items:
        ps = np.asarray([float(v) for v in ds.PixelSpacing])
        if ps.shape != ps0.shape or not np.allclose(ps, ps0, atol=GEOMETRY_ATOL, rtol=0):
            raise DicomSeriesError(
                f"{where}: inconsistent PixelSpacing in one series: {ps0.tolist()} mm in {first_path}, "
                f"{ps.tolist()} mm in {p}."
            )
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        if iop.shape != (6,) or not np.allclose(iop, iop0, atol=GEOMETRY_ATOL, rtol=0):
            raise DicomSeriesError(
                f"{where}: inconsistent ImageOrientationPatient in one series: {iop0.tolist()} in {first_path}, "
                f"{iop.tolist()} in {p}."
            )

    normal = _normal(first)
    pos = np.asarray([float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) for ds in datasets])
    order = np.argsort(pos, kind="stable")
    files = [files[i] for i in order]
    datasets = [datasets[i] for i in order]
    pos = pos[order]
    spacing = None
    if len(pos) > 1:
        gaps = np.diff(pos)
        dup = np.flatnonzero(gaps <= GEOMETRY_ATOL)
        if dup.size:
            i = int(dup[0])
            raise DicomSeriesError(
                f"{where}: two slices at the same position {pos[i]:.3f} mm along the slice normal "
                f"({files[i]} and {files[i + 1]}); a folder must hold one copy of one series."
            )
        spacing = float(gaps.min())
        missing, uneven = [], []
        for i, g in enumerate(gaps):
            k = int(round(g / spacing))
            if abs(g - k * spacing) > SPACING_RTOL * spacing * k:
                uneven.append(i)
            elif k > 1:
                missing += [pos[i] + j * spacing for j in range(1, k)]
        irregular = ""
        if uneven:
            shown = ", ".join(f"{gaps[i]:.4g} mm after {pos[i]:.3f} mm" for i in uneven[:5])
            irregular = (
                f"uneven slice spacing: the closest slices are {spacing:.4g} mm apart, but there are gaps of {shown}"
                + (f" and {len(uneven) - 5} more" if len(uneven) > 5 else "")
            )
        elif missing:
            shown = ", ".join(f"{m:.3f}" for m in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            irregular = (
                f"{len(missing)} missing slice(s): slices are {spacing:.4g} mm apart, but none is at {shown} mm "
                "along the slice normal (ImagePositionPatient · normal)"
            )
    else:
        irregular = ""

    numbers = [ds.get("InstanceNumber") for ds in datasets]
    if len(datasets) > 1:
        if any(n in (None, "") for n in numbers):
            bad = next(f for f, n in zip(files, numbers) if n in (None, ""))
            raise DicomSeriesError(f"{bad}: has no InstanceNumber, which the DICOM reader needs to stack the slices.")
        nums = np.asarray([int(n) for n in numbers])
        if not (np.all(np.diff(nums) > 0) or np.all(np.diff(nums) < 0)):
            raise DicomSeriesError(
                f"{where}: InstanceNumbers {nums.tolist()} do not follow the slice positions (in position order); "
                "MONAI's PydicomReader stacks slices by InstanceNumber, so renumber the slices along the table."
            )
        reader_files = files if nums[0] < nums[-1] else files[::-1]
    else:
        reader_files = list(files)
    _check_transfer_syntax(files, datasets)
    return SeriesInfo(files, datasets, series_uid, pos.tolist(), spacing, list(reader_files), irregular)


def _output_stem(path) -> str:
    """The name ``SaveImage`` gives a non-DICOM input's output (its file name without extension, ``.gz`` too)."""
    name = os.path.splitext(os.path.basename(os.path.normpath(os.fspath(path))))[0]
    return os.path.splitext(name)[0] if os.fspath(path).endswith(".gz") else name


def check_inputs(items: Sequence[dict], output_format: str = "nifti", key: str = "image") -> list[dict]:
    """Validate every DICOM input of a datalist before inference starts, so a bad series stops the run
    before anything is written; a folder holding several series becomes one item per series.

    The bundles denoise each slice on its own, so a single slice, missing slices and uneven spacing are
    fine: with ``output_format="dicom"`` each output slice keeps its source's position; a NIfTI volume
    has one slice spacing and cannot keep the positions of unevenly spaced slices, so with
    ``output_format="nifti"`` such a series is written with a nominal spacing and a warning that names
    the fix.

    Args:
        items: datalist items ``[{key: path}, ...]``.
        output_format: ``"nifti"`` or ``"dicom"``; DICOM output needs every input to be DICOM.
        key: the image key.

    Returns:
        The items, in order; an item whose DICOM folder holds several series is replaced by one copy per
        series whose ``key`` is the list of that series' files and whose ``<key>_output_name`` is its
        output name (``<folder>_series<N>``; :class:`LoadImageSeriesd` puts it in the image's meta).

    Raises:
        DicomSeriesError: a DICOM input fails :func:`find_series`; a DICOM input whose output would have the
            same name as another input's.
        ValueError: an unknown ``output_format``; a non-DICOM input with ``output_format="dicom"``; two
            non-DICOM inputs with the same output name (e.g. ``a/x.nii.gz`` and ``b/x.nii.gz``).
    """
    fmt = _check_format(output_format)
    out: list[dict] = []
    names: dict[str, str] = {}
    for item in items:
        path = item[key]
        if is_dicom_input(path):
            found = find_series(path)
            if len(found) > 1:
                logger.info(
                    f"{path}: {len(found)} DICOM series, each denoised to its own output: "
                    + ", ".join(f"{i.name} ({_describe(i.datasets[0])}, {len(i.files)} slice(s))" for i in found)
                )
            for info in found:
                if info.irregular and fmt == "nifti":
                    logger.warning(
                        f"{path}: {info.irregular}. Each slice is denoised on its own, but a NIfTI volume has one "
                        "slice spacing and cannot keep these positions: the NIfTI output's slice spacing is "
                        "nominal. Pass --output_format dicom to keep every slice's position."
                    )
                # a series of a folder holding several: its files, and its name (which needs the siblings)
                out.append({**item, key: info.source, f"{key}_{OUTPUT_NAME_KEY}": info.name} if len(found) > 1 else {**item})
                label = f"{path} ({info.series_uid})" if len(found) > 1 else str(path)
                if info.name in names:
                    raise DicomSeriesError(
                        f"{label} and {names[info.name]} would both be written as {info.name!r}; rename one "
                        "of them or run them separately."
                    )
                names[info.name] = label
        else:
            if fmt == "dicom":
                raise ValueError(
                    f"{path}: --output_format dicom writes a DICOM series next to a DICOM source (it copies the "
                    "patient, study and geometry from it), but this input is not DICOM; use --output_format nifti."
                )
            out.append(dict(item))
            stem = _output_stem(path)
            if stem in names:
                raise ValueError(
                    f"{path} and {names[stem]} would both be written as {stem!r}; rename one of them or run "
                    "them separately."
                )
            names[stem] = str(path)
    return out


def _check_format(output_format: str) -> str:
    fmt = str(output_format).strip().lower()
    if fmt not in _FORMATS:
        raise ValueError(f"`output_format` must be one of {_FORMATS}, got {output_format!r}.")
    return fmt


def _check_unit(unit: str) -> str:
    u = str(unit).strip().lower()
    if u not in _UNITS:
        raise ValueError(f"`unit` must be one of {_UNITS}, got {unit!r}.")
    return u


def _convert(img, src: str, dst: str, mu_water: float):
    """Between HU and attenuation in cm⁻¹: μ = (HU/1000 + 1)·μ_water."""
    if src == dst:
        return img
    if src == "hu":
        return (img / 1000.0 + 1.0) * mu_water
    return (img / mu_water - 1.0) * 1000.0


# ---------------------------------------------------------------------------------------------------------
# writing


def sort_by_position(datasets: Sequence) -> list:
    """Datasets ascending by ImagePositionPatient projected on the slice normal (as MONAI Deploy's
    DICOMSeriesToVolumeOperator orders its volume)."""
    if len(datasets) < 2:
        return list(datasets)
    normal = _normal(datasets[0])
    return sorted(datasets, key=lambda ds: float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)))


def choose_rescale(lo: float, hi: float, slope: float | None = None) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept (HU) that store the values in [lo, hi] HU as int16.

    With ``slope=None`` the finest of 1/16, 1/8, 1/4, 1/2 and 1 HU whose int16 range holds [lo, hi]
    with intercept 0, or else with the range's centre (rounded to whole HU) as intercept: CT's usual
    [-1024, 3071] HU is stored in steps of 1/8 HU, a denoised [-1030, 350] HU in steps of 1/16 HU.
    Ranges wider than 65,532 HU get a power-of-two slope above 1. Values are preserved to within slope/2.

    Raises:
        ValueError: non-finite bounds, ``lo > hi`` or a non-positive slope.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"choose_rescale: need finite lo <= hi, got {lo!r}, {hi!r}.")
    limit = 32767 - 1  # one code of margin for rounding
    if slope is not None:
        if not slope > 0:
            raise ValueError(f"choose_rescale: `slope` must be > 0 HU, got {slope!r}.")
        candidates = [float(slope)]
    else:
        candidates = [2.0**k for k in range(-4, 64)]  # finest first; steps above 1 HU only for absurd ranges
    for s in candidates:
        if max(abs(lo), abs(hi)) / s <= limit:
            return s, 0.0
        b = float(round((lo + hi) / 2))
        if max(hi - b, b - lo) / s <= limit:
            return s, float(b)
    raise ValueError(f"choose_rescale: [{lo}, {hi}] HU does not fit int16 with slope {slope} HU; use a larger slope.")


def _ds_number(x: float) -> str:
    s = f"{x:.10g}"
    return s if len(s) <= 16 else f"{x:.8e}"


#: Attributes removed from the copied source header: they describe the source's stored pixel values
#: (which change), its compression, private vendor data or embedded icons.
_DROP = (
    "LargestImagePixelValue",
    "SmallestImagePixelValue",
    "LargestPixelValueInSeries",
    "SmallestPixelValueInSeries",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "ModalityLUTSequence",
    "IconImageSequence",
    "FloatPixelData",
    "DoubleFloatPixelData",
    "PixelData",
    "DataSetTrailingPadding",
)


def write_dicom_series(
    volume_hu,
    references: Sequence,
    out_dir: str | os.PathLike,
    series_description: str = "Denoised",
    derivation_description: str | None = None,
    series_number: int | None = None,
    series_instance_uid: str | None = None,
    rescale_slope: float | None = None,
    if_exists: str = "beside",
) -> list[str]:
    """Write a float HU volume as a derived DICOM series, one file per slice, copying each source slice's header.

    Each slice keeps its source's patient, study, equipment and geometry attributes (ImagePositionPatient,
    ImageOrientationPatient, PixelSpacing, SliceThickness, Rows, Columns, InstanceNumber, ...), and gets a
    new SOPInstanceUID, one new SeriesInstanceUID for the series, ImageType DERIVED\\SECONDARY (value 3,
    e.g. AXIAL, kept), the given SeriesDescription and DerivationDescription, a SourceImageSequence
    pointing at its source slice and a new SeriesNumber. Private tags are dropped. Pixels are int16 with
    the RescaleSlope/RescaleIntercept of :func:`choose_rescale` (HU within slope/2), uncompressed
    (Explicit VR Little Endian). The files go to a temporary folder beside ``out_dir`` that is renamed to
    ``out_dir`` once all are written, so a crash never leaves half a series; the folder gets the mode the
    user's umask gives (not ``mkdtemp``'s 0700).

    An existing ``out_dir`` (a previous run's series, or anything else) is never replaced, changed or
    deleted: with ``if_exists="beside"`` (default) the series goes to the first free ``<out_dir>_2``,
    ``<out_dir>_3``, ... and a warning names both folders; with ``"error"`` ``FileExistsError`` is raised.

    Args:
        volume_hu: array ``(n_slices, Rows, Columns)`` in HU; slice ``i`` belongs to ``references[i]``.
        references: the source slices: pydicom datasets or file paths (pixel data not needed).
        out_dir: the folder to create; it must not exist (see ``if_exists``).
        series_description: SeriesDescription (LO, cut to 64 characters).
        derivation_description: DerivationDescription; default says from which series and how stored.
        series_number: SeriesNumber; default the source's + 1000.
        series_instance_uid: the new series' UID; default a fresh ``pydicom.uid.generate_uid()``.
        rescale_slope: quantisation step in HU; default chosen by :func:`choose_rescale` (≤ 1 HU).
        if_exists: what to do when ``out_dir`` exists: ``"beside"`` (write to a free name beside it) or
            ``"error"``.

    Returns:
        The written file paths, in slice order (their folder is the one actually written).

    Raises:
        ValueError: shape mismatch with the references, non-finite values, no reference, or an unknown
            ``if_exists``.
        FileExistsError: ``out_dir`` exists and ``if_exists="error"``.
    """
    _require_pydicom()
    vol = np.asarray(volume_hu.detach().cpu() if isinstance(volume_hu, torch.Tensor) else volume_hu, dtype=np.float64)
    if vol.ndim == 2:
        vol = vol[None]
    refs = []
    for r in references:
        if isinstance(r, (str, os.PathLike)):
            ds = pydicom.dcmread(os.fspath(r), stop_before_pixels=True, force=True)
        else:  # a pydicom Dataset: work on a copy
            ds = copy.deepcopy(r)
        refs.append(ds)
    if not refs:
        raise ValueError("write_dicom_series: no reference slices given.")
    if vol.ndim != 3 or vol.shape[0] != len(refs):
        raise ValueError(
            f"write_dicom_series: volume shape {vol.shape} does not match {len(refs)} reference slice(s); "
            "expected (n_slices, Rows, Columns)."
        )
    for i, ds in enumerate(refs):
        if (int(ds.Rows), int(ds.Columns)) != vol.shape[1:]:
            raise ValueError(
                f"write_dicom_series: slice {i} is {vol.shape[1:]} but its reference has Rows, Columns "
                f"{(int(ds.Rows), int(ds.Columns))}."
            )
    if not np.isfinite(vol).all():
        raise ValueError(f"write_dicom_series: the volume has {int((~np.isfinite(vol)).sum())} NaN/inf value(s).")
    slope, intercept = choose_rescale(float(vol.min()), float(vol.max()), rescale_slope)
    stored = np.round((vol - intercept) / slope).astype(np.int16)

    from pydicom.uid import generate_uid

    series_uid = series_instance_uid or generate_uid()
    src_number = refs[0].get("SeriesNumber")
    number = series_number if series_number is not None else (int(src_number) if src_number not in (None, "") else 0) + 1000
    src_uid = str(refs[0].get("SeriesInstanceUID", "?"))
    if derivation_description is None:
        derivation_description = f"Denoised from series {src_uid}"
    derivation_description = (
        f"{derivation_description}; float HU stored as int16 with RescaleSlope {_ds_number(slope)} "
        f"and RescaleIntercept {_ds_number(intercept)} (within {slope / 2:g} HU)"
    )[:1024]
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")

    if if_exists not in ("beside", "error"):
        raise ValueError(f"write_dicom_series: `if_exists` must be 'beside' or 'error', got {if_exists!r}.")
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.lexists(out_dir) and if_exists == "error":
        raise FileExistsError(f"write_dicom_series: {out_dir} exists; it is never replaced. Pass another folder.")
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

    parent, name = os.path.split(out_dir)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the series folder gets what os.mkdir would give
    paths = []
    try:
        for i, (src, px) in enumerate(zip(refs, stored)):
            ds = src
            ds.remove_private_tags()
            for kw in _DROP:
                if kw in ds:
                    delattr(ds, kw)
            sop_uid = generate_uid()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", UID("1.2.840.10008.5.1.4.1.1.2"))
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            source_ref = Dataset()
            source_ref.ReferencedSOPClassUID = src.get("SOPClassUID", ds.file_meta.MediaStorageSOPClassUID)
            source_ref.ReferencedSOPInstanceUID = str(src.get("SOPInstanceUID", ""))
            ds.SourceImageSequence = [source_ref]
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
            ds.SOPInstanceUID = sop_uid
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = number
            ds.SeriesDescription = str(series_description)[:64]
            ds.DerivationDescription = derivation_description
            old_type = ds.get("ImageType") or []
            old_type = [old_type] if isinstance(old_type, str) else [str(v) for v in old_type]
            ds.ImageType = ["DERIVED", "SECONDARY", *old_type[2:3]]
            ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = date
            ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = time
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleSlope = _ds_number(slope)
            ds.RescaleIntercept = _ds_number(intercept)
            ds.RescaleType = "HU"
            ds.PixelData = np.ascontiguousarray(px, dtype="<i2").tobytes()
            ds["PixelData"].VR = "OW"
            path = os.path.join(tmp, f"{i + 1:05d}.dcm")
            ds.save_as(path, enforce_file_format=True)
            paths.append(os.path.join(out_dir, os.path.basename(path)))
        target = _free_name(out_dir)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target != out_dir:
        paths = [os.path.join(target, os.path.basename(p)) for p in paths]
        logger.warning(
            f"write_dicom_series: {out_dir} already exists and was left as it is (an existing output is never "
            f"replaced or deleted); series {series_uid} was written beside it, to {target}."
        )
    logger.info(f"write_dicom_series: {len(paths)} slice(s) of series {series_uid} written to {target}.")
    return paths


def _umask() -> int:
    """The process's umask (read from /proc on Linux; elsewhere set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _free_name(path: str) -> str:
    """``path`` if nothing exists there, else the first free ``<path>_2``, ``<path>_3``, ..."""
    if not os.path.lexists(path):
        return path
    k = 2
    while os.path.lexists(f"{path}_{k}"):
        k += 1
    return f"{path}_{k}"


def bundle_descriptions(bundle_root: str | os.PathLike, bundle_id: str) -> tuple[str, str]:
    """SeriesDescription and DerivationDescription for series written by a bundle, with its name and version
    read from ``<bundle_root>/configs/metadata.json`` (left out when the file cannot be read).

    Read here rather than through ``@_meta_`` in the config, because MONAI Label reads inference.json
    without the metadata.
    """
    version, name = "", ""
    try:
        with open(os.path.join(os.fspath(bundle_root), "configs", "metadata.json"), encoding="utf-8") as f:
            meta = json.load(f)
        version, name = str(meta.get("version", "")), str(meta.get("name", ""))
    except (OSError, ValueError):
        pass
    series = f"Denoised by {bundle_id} {version}".strip()
    derivation = f"Denoised by the {bundle_id} MONAI bundle {version}".strip()
    derivation += f" ({name})" if name else ""
    return series[:64], derivation + "; research use only, not for diagnostic use"


# ---------------------------------------------------------------------------------------------------------
# transforms


class LoadImageSeriesd(LoadImaged):
    """``LoadImaged`` that reads validated DICOM CT series in HU (or cm⁻¹) and everything else as ``LoadImaged``.

    A path that is a DICOM file, or a folder with DICOM files directly inside, goes through
    :func:`validate_series` (clear :class:`DicomSeriesError` on bad input), then MONAI's ``LoadImage``
    with ``PydicomReader`` (RescaleSlope/RescaleIntercept applied: HU), limited to the validated files.
    The HU image is converted to ``unit``: unchanged for ``"hu"``, μ = (HU/1000 + 1)·``mu_water`` cm⁻¹ for
    ``"mu"``, so a config declared in cm⁻¹ reads DICOM without ``--input_unit hu``. The MetaTensor's meta
    gets ``"source_unit"`` (``"hu"``; the config's unit for other files) and ``"dicom_files"`` (a JSON list
    of the source files in the order of the last spatial axis), which :class:`SaveImageSeriesd` uses.

    Args:
        keys: image keys.
        unit: the unit the rest of the config expects, ``"mu"`` (default) or ``"hu"``.
        mu_water: water's attenuation in cm⁻¹. Default 0.2059 (60 keV).
        kwargs: passed to ``LoadImaged`` (``reader``, ``ensure_channel_first``, ...); ``image_only`` must stay true.
    """

    def __init__(self, keys: KeysCollection, unit: str = "mu", mu_water: float = MU_WATER_60KEV, **kwargs) -> None:
        if not kwargs.get("image_only", True):
            raise ValueError("LoadImageSeriesd: only image_only=True (MetaTensor output) is supported.")
        super().__init__(keys, **kwargs)
        self.unit = _check_unit(unit)
        self.mu_water = float(mu_water)
        self.ensure_channel_first = bool(kwargs.get("ensure_channel_first", False))

    def load_dicom(self, path: str | os.PathLike | Sequence[str], name: str | None = None) -> MetaTensor:
        """Validate and read one DICOM series: a folder, a file, or a list of files of one folder (one of the
        series of a folder holding several); returns a MetaTensor in ``self.unit``. ``name``: the output
        name to record (default :attr:`SeriesInfo.name`)."""
        info = validate_series(path)
        if isinstance(path, (list, tuple)):
            folders = {os.path.dirname(os.path.abspath(os.fspath(f))) for f in path}
            if len(folders) != 1:
                raise DicomSeriesError(f"LoadImageSeriesd: the files of one input must lie in one folder, got {sorted(folders)}.")
            path = folders.pop()
        path = os.fspath(path)
        if os.path.isdir(path):
            # PydicomReader reads every file of a folder; restrict it to the validated ones by exact name.
            names = "|".join(re.escape(os.path.join(path, os.path.basename(f))) for f in info.files)
            reader = PydicomReader(fname_regex=f"^(?:{names})$", force=True)
        else:
            reader = PydicomReader(force=True)
        if info.irregular:
            logger.warning(
                f"{path}: {info.irregular}; each slice is denoised on its own, but the volume's slice spacing "
                "is nominal (only a DICOM output keeps every slice's position)."
            )
        loader = LoadImage(reader=reader, image_only=True, dtype=np.float32, ensure_channel_first=self.ensure_channel_first)
        img = loader(path)
        img = _convert(img, "hu", self.unit, self.mu_water)
        img.meta[SOURCE_UNIT_KEY] = "hu"
        img.meta[DICOM_FILES_KEY] = json.dumps([os.path.abspath(f) for f in info.reader_files])
        img.meta[OUTPUT_NAME_KEY] = str(name or info.name)
        return img

    def __call__(self, data, reader=None):
        d = dict(data)
        for key, meta_key, meta_key_postfix in self.key_iterator(d, self.meta_keys, self.meta_key_postfix):
            if is_dicom_input(d[key]):
                img = self.load_dicom(d[key], d.get(f"{key}_{OUTPUT_NAME_KEY}"))
                out = img if self._loader.image_only else (img, dict(img.meta))
            else:
                out = self._loader(d[key], reader)
                img = out if self._loader.image_only else out[0]
                if isinstance(img, MetaTensor):
                    img.meta[SOURCE_UNIT_KEY] = self.unit
                if not self._loader.image_only:
                    out[1][SOURCE_UNIT_KEY] = self.unit
            if self._loader.image_only:  # as LoadImaged (MONAI Label switches image_only off)
                d[key] = out
            else:
                d[key] = out[0]
                meta_key = meta_key or f"{key}_{meta_key_postfix}"
                if meta_key in d and not self.overwriting:
                    raise KeyError(f"Metadata with key {meta_key} already exists and overwriting=False.")
                d[meta_key] = out[1]
        return d


class SaveImageSeriesd(SaveImaged):
    """``SaveImaged`` that writes each image in its source's unit, as NIfTI or, for DICOM sources, as DICOM.

    Inputs read from DICOM by :class:`LoadImageSeriesd` are written back in HU whatever the config's
    unit. ``output_format="nifti"`` (default) saves through ``SaveImaged`` (the keyword arguments apply);
    a DICOM source's file is named after its series (``<folder>``, ``<folder>_series<N>`` for one of
    several series of a folder, ``<file name>``) plus ``_<output_postfix>``. ``output_format="dicom"``
    writes a derived series (:func:`write_dicom_series`) per image to
    ``<output_dir>/<that name>_<output_postfix>/``, one file per source slice; an existing folder of that
    name is left as it is and the series goes beside it (``..._2``), with a warning.

    Args:
        keys: image keys (``"pred"``).
        output_format: ``"nifti"`` or ``"dicom"``.
        unit: the unit of the images as they arrive (the config's input unit), ``"mu"`` or ``"hu"``.
        mu_water: water's attenuation in cm⁻¹. Default 0.2059.
        series_description: SeriesDescription of written DICOM series (≤ 64 characters).
        derivation_description: DerivationDescription of written DICOM series (what made it).
        kwargs: passed to ``SaveImaged`` (``output_dir``, ``output_postfix``, ``output_ext``, ...).

    Raises:
        ValueError: unknown format or unit; with ``"dicom"``, an image that was not read from DICOM.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_format: str = "nifti",
        unit: str = "mu",
        mu_water: float = MU_WATER_60KEV,
        series_description: str = "Denoised",
        derivation_description: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(keys, **kwargs)
        self.format = _check_format(output_format)
        self.unit = _check_unit(unit)
        self.mu_water = float(mu_water)
        self.series_description = series_description
        self.derivation_description = derivation_description
        self.output_dir = os.fspath(kwargs.get("output_dir", "./"))
        self.output_postfix = kwargs.get("output_postfix", "trans")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            meta = dict(getattr(img, "meta", {}) or {})
            source_unit = str(meta.get(SOURCE_UNIT_KEY, self.unit)).lower()
            img = _convert(img, self.unit, source_unit if source_unit in _UNITS else self.unit, self.mu_water)
            name = meta.get(OUTPUT_NAME_KEY)
            if self.format == "nifti":
                if name and isinstance(img, MetaTensor):
                    # name the file after the series (SaveImage takes the subject from filename_or_obj):
                    # a stand-in path beside the source keeps data_root_dir/separate_folder working
                    source = img.meta.get("filename_or_obj", name)
                    stand_in = os.path.join(os.path.dirname(os.path.normpath(os.fspath(source))), f"{name}.dcm")
                    img.meta["filename_or_obj"] = stand_in
                    try:
                        self.saver(img=img)
                    finally:
                        img.meta["filename_or_obj"] = source
                else:
                    self.saver(img=img)
                continue
            files = meta.get(DICOM_FILES_KEY)
            source = str(meta.get("filename_or_obj", key))
            if not files:
                raise ValueError(
                    f"{source}: --output_format dicom needs a DICOM source (it copies the patient, study and "
                    "geometry from it), but this image was not read from DICOM; use --output_format nifti."
                )
            files = json.loads(files) if isinstance(files, str) else list(files)
            arr = np.asarray(torch.as_tensor(img).detach().cpu().float().numpy())
            if arr.shape[0] != 1:
                raise ValueError(f"SaveImageSeriesd: expected one channel first, got shape {arr.shape}.")
            arr = arr[0]
            # (x = column, y = row[, slice]) as PydicomReader lays them out -> (slice, row, column)
            vol = arr.T[None] if arr.ndim == 2 else np.transpose(arr, (2, 1, 0))
            base = name or _stem(source)
            out = os.path.join(self.output_dir, f"{base}_{self.output_postfix}" if self.output_postfix else base)
            write_dicom_series(
                vol,
                files,
                out,
                series_description=self.series_description,
                derivation_description=self.derivation_description,
            )
        return d
