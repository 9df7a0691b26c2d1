# Generated from bundles/common/dicom_series.py by `python bundles/common/sync.py`: edit it there, not here.
"""DICOM CT series in and out of the inference configs: input checks, a loader, a derived-series writer.

Reading rests on MONAI's ``PydicomReader`` (which applies RescaleSlope/RescaleIntercept: HU), limited to the
files that ``dicom_checks`` validated from their headers. :func:`check_inputs` runs those checks on a whole
datalist before inference writes anything. The writer (:func:`write_dicom_series`) is the part no library
has: highdicom writes Enhanced (multi-frame) objects and MONAI writes no DICOM; it writes single-frame CT
Image Storage next to the source series, copying each source slice's header. An existing output folder is
never replaced: the series goes beside it (``<name>_2``, ...).

Units: Hounsfield units (HU), attenuation μ in cm⁻¹ (μ = (HU/1000 + 1)·μ_water), lengths in mm.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, PydicomReader
from monai.transforms import LoadImage, LoadImaged, SaveImaged

from .dicom_checks import _describe, _floats, _normal, _stem, find_series, is_dicom_input, pydicom, validate_series
from .dicom_checks import DicomSeriesError, SeriesInfo, dicom_files, is_dicom_file, list_inputs  # noqa: F401 (re-exported)
from .helpers import MU_WATER_60KEV

__all__ = ["DicomSeriesError", "SeriesInfo", "MU_WATER_60KEV", "SOURCE_UNIT_KEY", "DICOM_FILES_KEY", "OUTPUT_NAME_KEY",
           "is_dicom_file", "dicom_files", "is_dicom_input", "list_inputs", "find_series", "validate_series",
           "check_inputs", "sort_by_position", "choose_rescale", "write_dicom_series", "bundle_descriptions",
           "LoadImageSeriesd", "SaveImageSeriesd"]

logger = logging.getLogger(__name__)
# MONAI 1.6's LoadImage builds NvImgCodecPydicomReader, which logs and warns on every call when its optional
# GPU decoder is absent (always, on CPU); the bundles read with PydicomReader, so exactly those lines are dropped.
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader: nvImageCodec decoder plugin", category=UserWarning)

#: Meta keys: the unit the source stores (``"hu"`` for DICOM), a JSON list of the source DICOM files (in
#: the order of the volume's last axis), and a DICOM input's output name.
SOURCE_UNIT_KEY, DICOM_FILES_KEY, OUTPUT_NAME_KEY = "source_unit", "dicom_files", "output_name"
_UNITS, _FORMATS = ("mu", "hu"), ("nifti", "dicom")


def _output_stem(path) -> str:
    """The name ``SaveImage`` gives a non-DICOM input's output (file name without extension, ``.gz`` too)."""
    name = os.path.splitext(os.path.basename(os.path.normpath(os.fspath(path))))[0]
    return os.path.splitext(name)[0] if os.fspath(path).endswith(".gz") else name


def check_inputs(items: Sequence[dict], output_format: str = "nifti", key: str = "image") -> list[dict]:
    """Validate every DICOM input of a datalist before inference starts; a folder of several series gives one item each.

    Such an item's ``key`` is the list of the series' files and ``<key>_output_name`` its output name. A series
    with missing slices or uneven spacing is accepted; with NIfTI output (one slice spacing) a warning says so.

    Raises:
        DicomSeriesError: a DICOM input fails :func:`find_series`, or two outputs would have one name.
        ValueError: an unknown ``output_format``; a non-DICOM input with ``"dicom"``; two non-DICOM outputs of one name.
    """
    fmt = _choice(output_format, _FORMATS, "output_format")
    out, names = [], {}

    def claim(name: str, label: str, error=ValueError) -> None:
        if name in names:
            raise error(f"{label} and {names[name]} would both be written as {name!r}; rename one of them or run them separately.")
        names[name] = label

    for item in items:
        path = item[key]
        if not is_dicom_input(path):
            if fmt == "dicom":
                raise ValueError(f"{path}: --output_format dicom writes a DICOM series next to a DICOM source (it copies "
                                 "the patient, study and geometry from it), but this input is not DICOM; use --output_format nifti.")
            out.append(dict(item))
            claim(_output_stem(path), str(path))
            continue
        found = find_series(path)
        if len(found) > 1:
            logger.info(f"{path}: {len(found)} DICOM series, each denoised to its own output: " + ", ".join(
                f"{i.name} ({_describe(i.datasets[0])}, {len(i.files)} slice(s))" for i in found))
        for info in found:
            if info.irregular and fmt == "nifti":
                logger.warning(f"{path}: {info.irregular}. Each slice is denoised on its own, but a NIfTI volume has one "
                               "slice spacing and cannot keep these positions: the NIfTI output's slice spacing is "
                               "nominal. Pass --output_format dicom to keep every slice's position.")
            several = len(found) > 1
            out.append({**item, key: info.source, f"{key}_{OUTPUT_NAME_KEY}": info.name} if several else dict(item))
            claim(info.name, f"{path} ({info.series_uid})" if several else str(path), DicomSeriesError)
    return out


def _choice(value, allowed: tuple, name: str) -> str:
    v = str(value).strip().lower()
    if v not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    return v


def _convert(img, src: str, dst: str, mu_water: float):
    """Between HU and attenuation in cm⁻¹: μ = (HU/1000 + 1)·μ_water."""
    if src == dst:
        return img
    return (img / 1000.0 + 1.0) * mu_water if src == "hu" else (img / mu_water - 1.0) * 1000.0


# ---- writing -------------------------------------------------------------------------------------------------
def sort_by_position(datasets: Sequence) -> list:
    """Datasets ascending by ImagePositionPatient along the slice normal (as MONAI Deploy orders its volume)."""
    if len(datasets) < 2:
        return list(datasets)
    normal = _normal(datasets[0])
    return sorted(datasets, key=lambda ds: float(np.dot(_floats(ds.ImagePositionPatient), normal)))


def choose_rescale(lo: float, hi: float, slope: float | None = None) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept (HU) that store [lo, hi] HU as int16, to within slope/2.

    With ``slope=None``: the finest power of two from 1/16 HU up whose int16 range holds [lo, hi] with
    intercept 0, or else centred on the range (intercept rounded to whole HU): [-1024, 3071] HU gets 1/8 HU.

    Raises:
        ValueError: non-finite bounds, ``lo > hi``, a non-positive slope, or a range that does not fit.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"choose_rescale: need finite lo <= hi, got {lo!r}, {hi!r}.")
    if slope is not None and not slope > 0:
        raise ValueError(f"choose_rescale: `slope` must be > 0 HU, got {slope!r}.")
    limit, centre = 32767 - 1, float(round((lo + hi) / 2))  # one code of margin for rounding
    for s in [float(slope)] if slope is not None else [2.0**k for k in range(-4, 64)]:
        for b in (0.0, centre):
            if max(hi - b, b - lo) / s <= limit:
                return s, b
    raise ValueError(f"choose_rescale: [{lo}, {hi}] HU does not fit int16 with slope {slope} HU; use a larger slope.")


def _ds_number(x: float) -> str:
    s = f"{x:.10g}"
    return s if len(s) <= 16 else f"{x:.8e}"


#: Attributes dropped from the copied source header: the source's stored values, compression, icons.
_DROP = ("LargestImagePixelValue", "SmallestImagePixelValue", "LargestPixelValueInSeries", "SmallestPixelValueInSeries",
         "PixelPaddingValue", "PixelPaddingRangeLimit", "ModalityLUTSequence", "IconImageSequence", "FloatPixelData",
         "DoubleFloatPixelData", "PixelData", "DataSetTrailingPadding")


def _derive(ds, pixels: np.ndarray, uid: str, number: int, description: str, derivation: str, rescale, when) -> None:
    """Turn a copy of a source slice's header ``ds`` into the derived slice holding ``pixels`` (int16)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

    ds.remove_private_tags()
    for kw in _DROP:
        if kw in ds:
            delattr(ds, kw)
    source = Dataset()
    source.ReferencedSOPClassUID = ds.get("SOPClassUID", UID("1.2.840.10008.5.1.4.1.1.2"))
    source.ReferencedSOPInstanceUID = str(ds.get("SOPInstanceUID", ""))
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = source.ReferencedSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID, ds.file_meta.ImplementationClassUID = ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID
    ds.SourceImageSequence = [source]
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = uid, number, str(description)[:64]
    ds.DerivationDescription = derivation
    old = ds.get("ImageType") or []
    ds.ImageType = ["DERIVED", "SECONDARY", *([old] if isinstance(old, str) else [str(v) for v in old])[2:3]]
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = when.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = when.strftime("%H%M%S.%f")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds_number(rescale[0]), _ds_number(rescale[1]), "HU"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    ds["PixelData"].VR = "OW"


def write_dicom_series(volume_hu, references: Sequence, out_dir: str | os.PathLike, series_description: str = "Denoised",
                       derivation_description: str | None = None, series_number: int | None = None,
                       series_instance_uid: str | None = None, rescale_slope: float | None = None,
                       if_exists: str = "beside") -> list[str]:
    """Write a float HU volume as a derived CT series, one file per slice, each a copy of its source slice's header.

    Patient, study, equipment and geometry are kept; each slice gets a new SOPInstanceUID, the series a new
    SeriesInstanceUID and SeriesNumber (default the source's + 1000), ImageType DERIVED\\SECONDARY, the
    descriptions and a SourceImageSequence; private tags are dropped. Pixels are int16 with the rescale of
    :func:`choose_rescale`, Explicit VR Little Endian. Files go to a temporary folder (mode from the umask)
    renamed to ``out_dir`` when complete. An existing ``out_dir`` is never touched: ``if_exists="beside"``
    writes to the first free ``<out_dir>_2``, ... with a warning; ``"error"`` raises ``FileExistsError``.

    Args:
        volume_hu: ``(n_slices, Rows, Columns)`` in HU; slice ``i`` belongs to ``references[i]``.
        references: the source slices: pydicom datasets or file paths.

    Returns:
        The written paths, in slice order.

    Raises:
        ValueError: a shape mismatch, non-finite values, no reference, an unknown ``if_exists``.
    """
    if if_exists not in ("beside", "error"):
        raise ValueError(f"write_dicom_series: `if_exists` must be 'beside' or 'error', got {if_exists!r}.")
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.lexists(out_dir) and if_exists == "error":
        raise FileExistsError(f"write_dicom_series: {out_dir} exists; it is never replaced. Pass another folder.")
    vol = np.asarray(volume_hu.detach().cpu() if isinstance(volume_hu, torch.Tensor) else volume_hu, dtype=np.float64)
    vol = vol[None] if vol.ndim == 2 else vol
    refs = [pydicom.dcmread(os.fspath(r), stop_before_pixels=True, force=True) if isinstance(r, (str, os.PathLike))
            else copy.deepcopy(r) for r in references]
    if not refs:
        raise ValueError("write_dicom_series: no reference slices given.")
    if vol.ndim != 3 or vol.shape[0] != len(refs) or any((int(ds.Rows), int(ds.Columns)) != vol.shape[1:] for ds in refs):
        raise ValueError(f"write_dicom_series: volume shape {vol.shape} does not match {len(refs)} reference slice(s) of "
                         f"Rows, Columns {sorted({(int(ds.Rows), int(ds.Columns)) for ds in refs})}; expected (n_slices, Rows, Columns).")
    if not np.isfinite(vol).all():
        raise ValueError(f"write_dicom_series: the volume has {int((~np.isfinite(vol)).sum())} NaN/inf value(s).")
    slope, intercept = choose_rescale(float(vol.min()), float(vol.max()), rescale_slope)
    src_number = refs[0].get("SeriesNumber")
    number = series_number if series_number is not None else (int(src_number) if src_number not in (None, "") else 0) + 1000
    derivation = (f"{derivation_description or 'Denoised from series ' + str(refs[0].get('SeriesInstanceUID', '?'))}; "
                  f"float HU stored as int16 with RescaleSlope {_ds_number(slope)} and RescaleIntercept "
                  f"{_ds_number(intercept)} (within {slope / 2:g} HU)")[:1024]
    uid, now = series_instance_uid or pydicom.uid.generate_uid(), datetime.datetime.now()
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".partial", dir=os.path.dirname(out_dir))
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; the series folder gets what os.mkdir would give
    try:
        for i, (ds, px) in enumerate(zip(refs, np.round((vol - intercept) / slope).astype(np.int16))):
            _derive(ds, px, uid, number, series_description, derivation, (slope, intercept), now)
            ds.save_as(os.path.join(tmp, f"{i + 1:05d}.dcm"), enforce_file_format=True)
        target, k = out_dir, 2
        while os.path.lexists(target):  # never replace an existing folder: the first free <out_dir>_<k>
            target, k = f"{out_dir}_{k}", k + 1
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target != out_dir:
        logger.warning(f"write_dicom_series: {out_dir} already exists and was left as it is (an existing output is never "
                       f"replaced or deleted); series {uid} was written beside it, to {target}.")
    logger.info(f"write_dicom_series: {len(refs)} slice(s) of series {uid} written to {target}.")
    return [os.path.join(target, f"{i + 1:05d}.dcm") for i in range(len(refs))]


def bundle_descriptions(bundle_root: str | os.PathLike, bundle_id: str) -> tuple[str, str]:
    """SeriesDescription and DerivationDescription of a bundle's series, with the name and version of its
    ``configs/metadata.json`` (read here, not through ``@_meta_``: MONAI Label reads inference.json alone)."""
    try:
        with open(os.path.join(os.fspath(bundle_root), "configs", "metadata.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        meta = {}
    version, name = str(meta.get("version", "")), str(meta.get("name", ""))
    derivation = f"Denoised by the {bundle_id} MONAI bundle {version}".strip() + (f" ({name})" if name else "")
    return f"Denoised by {bundle_id} {version}".strip()[:64], derivation + "; research use only, not for diagnostic use"


# ---- transforms ----------------------------------------------------------------------------------------------
class LoadImageSeriesd(LoadImaged):
    """``LoadImaged`` that reads validated DICOM series in HU, converted to ``unit``; other paths as ``LoadImaged``.

    A DICOM file, folder or list of files is validated (:func:`validate_series`) and read by ``PydicomReader``
    restricted to the validated files; the meta gets ``source_unit`` (``"hu"``; ``unit`` for other files),
    ``dicom_files`` and ``output_name``, which :class:`SaveImageSeriesd` uses.

    Args:
        keys: image keys.
        unit: the unit the config expects, ``"mu"`` (cm⁻¹, default) or ``"hu"``.
        mu_water: water's attenuation in cm⁻¹. Default :data:`MU_WATER_60KEV` (60 keV).
        kwargs: passed to ``LoadImaged`` (``ensure_channel_first``, ...).
    """

    def __init__(self, keys: KeysCollection, unit: str = "mu", mu_water: float = MU_WATER_60KEV, **kwargs) -> None:
        if not kwargs.get("image_only", True):
            raise ValueError("LoadImageSeriesd: only image_only=True (MetaTensor output) is supported.")
        super().__init__(keys, **kwargs)
        self.unit, self.mu_water = _choice(unit, _UNITS, "unit"), float(mu_water)
        self.ensure_channel_first = bool(kwargs.get("ensure_channel_first", False))

    def load_dicom(self, path: str | os.PathLike | Sequence[str], name: str | None = None) -> MetaTensor:
        """Validate and read one DICOM series (folder, file, or files of one folder) as a MetaTensor in ``self.unit``."""
        info = validate_series(path)
        if isinstance(path, (list, tuple)):
            folders = {os.path.dirname(os.path.abspath(os.fspath(f))) for f in path}
            if len(folders) != 1:
                raise DicomSeriesError(f"LoadImageSeriesd: the files of one input must lie in one folder, got {sorted(folders)}.")
            path = folders.pop()
        path = os.fspath(path)
        regex = "|".join(re.escape(os.path.join(path, os.path.basename(f))) for f in info.files)
        reader = PydicomReader(fname_regex=f"^(?:{regex})$", force=True) if os.path.isdir(path) else PydicomReader(force=True)
        if info.irregular:
            logger.warning(f"{path}: {info.irregular}; each slice is denoised on its own, but the volume's slice spacing "
                           "is nominal (only a DICOM output keeps every slice's position).")
        img = LoadImage(reader=reader, image_only=True, dtype=np.float32, ensure_channel_first=self.ensure_channel_first)(path)
        img = _convert(img, "hu", self.unit, self.mu_water)
        img.meta.update({SOURCE_UNIT_KEY: "hu", DICOM_FILES_KEY: json.dumps([os.path.abspath(f) for f in info.reader_files]),
                         OUTPUT_NAME_KEY: str(name or info.name)})
        return img

    def __call__(self, data, reader=None):
        d = dict(data)
        for key, meta_key, postfix in self.key_iterator(d, self.meta_keys, self.meta_key_postfix):
            if is_dicom_input(d[key]):
                img = self.load_dicom(d[key], d.get(f"{key}_{OUTPUT_NAME_KEY}"))
                meta = dict(img.meta)
            else:
                out = self._loader(d[key], reader)
                img, meta = (out, {}) if self._loader.image_only else out
                meta[SOURCE_UNIT_KEY] = self.unit
                if isinstance(img, MetaTensor):
                    img.meta[SOURCE_UNIT_KEY] = self.unit
            d[key] = img
            if not self._loader.image_only:  # as LoadImaged (MONAI Label switches image_only off)
                meta_key = meta_key or f"{key}_{postfix}"
                if meta_key in d and not self.overwriting:
                    raise KeyError(f"Metadata with key {meta_key} already exists and overwriting=False.")
                d[meta_key] = meta
        return d


class SaveImageSeriesd(SaveImaged):
    """``SaveImaged`` that writes each image in its source's unit: NIfTI (as ``SaveImaged``) or a DICOM series.

    Images read from DICOM by :class:`LoadImageSeriesd` are written in HU, named after their series
    (``output_name``) plus ``_<output_postfix>``; ``output_format="dicom"`` writes a derived series
    (:func:`write_dicom_series`) to ``<output_dir>/<name>_<output_postfix>/``, beside an existing one.

    Args:
        keys: image keys (``"pred"``).
        output_format: ``"nifti"`` or ``"dicom"``.
        unit: the unit of the images as they arrive, ``"mu"`` or ``"hu"``.
        mu_water: water's attenuation in cm⁻¹. Default :data:`MU_WATER_60KEV`.
        series_description, derivation_description: of written DICOM series.
        kwargs: passed to ``SaveImaged`` (``output_dir``, ``output_postfix``, ...).

    Raises:
        ValueError: unknown format or unit; with ``"dicom"``, an image that was not read from DICOM.
    """

    def __init__(self, keys: KeysCollection, output_format: str = "nifti", unit: str = "mu", mu_water: float = MU_WATER_60KEV,
                 series_description: str = "Denoised", derivation_description: str | None = None, **kwargs) -> None:
        super().__init__(keys, **kwargs)
        self.format, self.unit = _choice(output_format, _FORMATS, "output_format"), _choice(unit, _UNITS, "unit")
        self.mu_water, self.series_description, self.derivation_description = float(mu_water), series_description, derivation_description
        self.output_dir, self.output_postfix = os.fspath(kwargs.get("output_dir", "./")), kwargs.get("output_postfix", "trans")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            meta = dict(getattr(d[key], "meta", {}) or {})
            source_unit = str(meta.get(SOURCE_UNIT_KEY, self.unit)).lower()
            img = _convert(d[key], self.unit, source_unit if source_unit in _UNITS else self.unit, self.mu_water)
            name, source = meta.get(OUTPUT_NAME_KEY), str(meta.get("filename_or_obj", key))
            if self.format == "nifti":
                if name and isinstance(img, MetaTensor):  # SaveImage names the file after filename_or_obj: a stand-in
                    img.meta["filename_or_obj"] = os.path.join(os.path.dirname(os.path.normpath(source)), f"{name}.dcm")
                try:  # (a stand-in beside the source keeps data_root_dir/separate_folder working)
                    self.saver(img=img)
                finally:
                    if isinstance(img, MetaTensor) and "filename_or_obj" in meta:
                        img.meta["filename_or_obj"] = meta["filename_or_obj"]
                continue
            if not meta.get(DICOM_FILES_KEY):
                raise ValueError(f"{source}: --output_format dicom needs a DICOM source (it copies the patient, study and "
                                 "geometry from it), but this image was not read from DICOM; use --output_format nifti.")
            files = meta[DICOM_FILES_KEY]
            arr = torch.as_tensor(img).detach().cpu().float().numpy()
            if arr.shape[0] != 1:
                raise ValueError(f"SaveImageSeriesd: expected one channel first, got shape {arr.shape}.")
            vol = arr[0].T[None] if arr.ndim == 3 else np.transpose(arr[0], (2, 1, 0))  # (x, y[, z]) -> (slice, row, column)
            base = name or _stem(source)
            write_dicom_series(vol, json.loads(files) if isinstance(files, str) else list(files),
                               os.path.join(self.output_dir, f"{base}_{self.output_postfix}" if self.output_postfix else base),
                               series_description=self.series_description, derivation_description=self.derivation_description)
        return d
