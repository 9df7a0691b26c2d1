"""MONAI Deploy App SDK operators of the LDCT denoising app: series to volume (one-slice series too), float
bundle inference and a DICOM series writer.

Imported by ``app.py`` after the input has been validated (importing the SDK starts Holoscan, which
takes a few seconds). The bundle's own ``scripts.dicom_series`` module does the DICOM writing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from monai.deploy.core import Fragment, Image, Operator, OperatorSpec
from monai.deploy.operators.dicom_series_to_volume_operator import DICOMSeriesToVolumeOperator
from monai.deploy.operators.monai_bundle_inference_operator import MonaiBundleInferenceOperator
from monai.transforms import Compose, EnsureChannelFirstd

__all__ = ["SeriesToVolumeOperator", "FloatBundleInferenceOperator", "DicomSeriesWriterOperator", "single_slice_affines"]

logger = logging.getLogger(__name__)


def single_slice_affines(ds) -> tuple[np.ndarray, np.ndarray]:
    """The (DICOM LPS, NIfTI RAS) 4×4 affines of a one-slice series, laid out as the SDK's
    ``DICOMSeriesToVolumeOperator.compute_affine_transform`` lays them out for several slices, with the
    slice normal (row cosines × column cosines) times the slice thickness (1 mm without one) as the third
    column; mm.

    Args:
        ds: the slice's pydicom dataset (ImageOrientationPatient, ImagePositionPatient, PixelSpacing).
    """
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
    row, col = iop[:3], iop[3:]
    vr, vc = (float(v) for v in ds.PixelSpacing)
    thickness = ds.get("SliceThickness")
    dz = float(thickness) if thickness not in (None, "") and float(thickness) > 0 else 1.0
    m = np.eye(4)
    m[:3, 0] = row * vr  # as the SDK: row cosines times PixelSpacing[0], column cosines times PixelSpacing[1]
    m[:3, 1] = col * vc
    m[:3, 2] = np.cross(row, col) * dz
    m[:3, 3] = [float(v) for v in ds.ImagePositionPatient]
    return m, np.diag([-1.0, -1.0, 1.0, 1.0]) @ m  # LPS -> RAS: x and y change sign


class SeriesToVolumeOperator(DICOMSeriesToVolumeOperator):
    """``DICOMSeriesToVolumeOperator`` that also gives a one-slice series its affine.

    The SDK (4.0) returns from ``prepare_series`` early when a series has one slice, before the affines
    are computed; ``MonaiBundleInferenceOperator`` then turns the missing ``nifti_affine_transform`` into
    an object array and fails in ``MetaTensor.affine`` with ``TypeError: can't convert np.ndarray of type
    numpy.object_``. A single real scanner slice (one exported CT image) hits this. Here the affines of
    :func:`single_slice_affines` are set instead, and the depth spacing is the slice thickness.
    """

    def prepare_series(self, series):
        super().prepare_series(series)
        instances = series.get_sop_instances()
        if len(instances) == 1 and getattr(series, self.ATTRIBUTE_NIFTI_AFFINE, None) is None:
            ds = instances[0].get_native_sop_instance()
            dicom_affine, nifti_affine = single_slice_affines(ds)
            setattr(series, self.ATTRIBUTE_DICOM_AFFINE, dicom_affine)
            setattr(series, self.ATTRIBUTE_NIFTI_AFFINE, nifti_affine)
            series.depth_pixel_spacing = float(np.linalg.norm(dicom_affine[:3, 2]))
            series.depth_direction_cosine = list(dicom_affine[:3, 2] / series.depth_pixel_spacing)


class FloatBundleInferenceOperator(MonaiBundleInferenceOperator):
    """``MonaiBundleInferenceOperator`` for image-to-image bundles whose output is a float image.

    What differs from the SDK operator (4.0.0), for the LDCT bundles:

    * ``_send_output``: the stock operator casts ``Image`` outputs to ``uint8`` (right for segmentation
      labels, but it destroys HU images), so this one emits the float32 prediction, rearranged from the
      MONAI layout (W, H, D) back to the ``Image`` layout (D, H, W) of ``DICOMSeriesToVolumeOperator``.
    * ``_init_config``: the volume from ``DICOMSeriesToVolumeOperator`` is in HU (rescale slope and
      intercept applied), and the operator drops the bundle's loader, so the bundle config's
      ``input_unit`` is set to ``"hu"`` (when the config has that key) and the config is parsed again:
      the bundle's intensity scaling then maps HU to the network's scale and back. When the
      preprocessing has no ``EnsureChannelFirstd`` (the bundle's loader added the channel), one is put first.

    Args:
        fragment: the application.
        input_unit: value given to the bundle config's ``input_unit``. Default ``"hu"``; ``None`` keeps the config's.
        args, kwargs: as ``MonaiBundleInferenceOperator`` (``app_context``, ``input_mapping``,
            ``output_mapping``, ``bundle_path``, ...).
    """

    def __init__(self, fragment: Fragment, *args, input_unit: str | None = "hu", **kwargs) -> None:
        self._input_unit = input_unit  # set first: the base class may parse the bundle in its __init__
        super().__init__(fragment, *args, **kwargs)

    def _init_config(self, config_names):
        super()._init_config(config_names)
        parser = self._parser
        if self._input_unit is not None and parser.get("input_unit") not in (None, self._input_unit):
            parser["input_unit"] = self._input_unit
            parser.parse(reset=True)
            self._inferer = parser.get_parsed_content(self._bundle_config_names.inferer_name)
            self._preproc = self._get_compose(self._bundle_config_names.preproc_name, ["LoadImage", "SaveImage"])
            self._postproc = self._get_compose(self._bundle_config_names.postproc_name, ["LoadImage", "SaveImage"])
            logger.info(f"Bundle input_unit set to {self._input_unit!r} (DICOM volumes are in HU).")
        if not any(isinstance(t, EnsureChannelFirstd) for t in self._preproc.transforms):
            # The bundle adds the channel in its loader (LoadImaged(ensure_channel_first=True)), which the
            # SDK operator removes; the Image from DICOMSeriesToVolumeOperator has no channel.
            keys = list(self._inputs)
            self._preproc = Compose([EnsureChannelFirstd(keys=keys), *self._preproc.transforms])

    def _send_output(self, value: Any, name: str, metadata: dict, op_output, context):
        if self._get_io_data_type(self._outputs[name]) is not Image:
            return super()._send_output(value, name, metadata, op_output, context)
        arr = value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, np.float32)
        while arr.ndim > 3 and arr.shape[0] == 1:  # drop batch and channel dimensions
            arr = arr[0]
        if arr.ndim == 3:
            arr = np.swapaxes(arr, 0, 2)  # MONAI (W, H, D) -> Image (D, H, W)
        elif arr.ndim == 2:
            arr = arr.T[None]  # (W, H) -> (1, H, W)
        else:
            raise ValueError(f"FloatBundleInferenceOperator: cannot make an image of the output shape {arr.shape}.")
        op_output.emit(Image(np.ascontiguousarray(arr, dtype=np.float32), metadata=dict(metadata or {})), name)


class DicomSeriesWriterOperator(Operator):
    """Write a float HU ``Image`` (D, H, W) as a derived DICOM series of the selected source series.

    Named inputs:
        image: the denoised volume, ``Image`` in HU, slices ascending along the slice normal (the order
            of ``DICOMSeriesToVolumeOperator``).
        study_selected_series_list: the selected series (``DICOMSeriesSelectorOperator``), whose slices
            give the headers of the new ones.

    The series goes to ``<output_folder>/<new SeriesInstanceUID>/`` through the bundle's
    ``write_dicom_series`` (atomic: a temporary folder renamed when complete).

    Args:
        fragment: the application.
        output_folder: where the series folder is created.
        write_fn: the bundle's ``scripts.dicom_series.write_dicom_series``.
        sort_fn: the bundle's ``scripts.dicom_series.sort_by_position``.
        series_description: SeriesDescription of the new series.
        derivation_description: DerivationDescription of the new series.
        written_folders: a list that gets the folder of each series written (for the caller).
    """

    def __init__(
        self,
        fragment: Fragment,
        *args,
        output_folder: Path,
        write_fn: Callable,
        sort_fn: Callable,
        series_description: str = "Denoised",
        derivation_description: str | None = None,
        written_folders: list | None = None,
        **kwargs,
    ) -> None:
        self.output_folder = Path(output_folder)
        self.written_folders = written_folders if written_folders is not None else []
        self.write_fn = write_fn
        self.sort_fn = sort_fn
        self.series_description = series_description
        self.derivation_description = derivation_description
        self.written: list[str] = []
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("image")
        spec.input("study_selected_series_list")

    def compute(self, op_input, op_output, context):
        from pydicom.uid import generate_uid

        image = op_input.receive("image")
        selected = op_input.receive("study_selected_series_list")
        if not selected or not selected[0].selected_series:
            raise ValueError("DicomSeriesWriterOperator: no series was selected; nothing to write.")
        series = selected[0].selected_series[0].series
        datasets = self.sort_fn([sop.get_native_sop_instance() for sop in series.get_sop_instances()])
        volume = image.asnumpy()
        uid = generate_uid()
        self.written = self.write_fn(
            volume,
            datasets,
            self.output_folder / uid,
            series_description=self.series_description,
            derivation_description=self.derivation_description,
            series_instance_uid=uid,
            if_exists="error",  # a fresh UID: the folder cannot exist; if it did, it would be left alone
        )
        folder = Path(self.written[0]).parent
        self.written_folders.append(folder)
        logger.info(f"Wrote {len(self.written)} slice(s) to {folder}.")
