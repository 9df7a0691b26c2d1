"""MONAI Deploy App SDK application: DICOM CT series in, denoised DICOM CT series out.

    python -m ldct_scripts.deploy_app --bundle bundles/unet_ldct -i DICOM_DIR -o OUT_DIR [-m MODEL.ts] [--cache-dir DIR]

Pipeline (MONAI Deploy App SDK 4.0, Holoscan): ``DICOMDataLoaderOperator`` → ``DICOMSeriesSelectorOperator``
(Modality CT and the series' UID) → ``SeriesToVolumeOperator`` (the SDK's ``DICOMSeriesToVolumeOperator``,
HU, which here also gives a one-slice series its affine) → ``FloatBundleInferenceOperator`` (the SDK's
``MonaiBundleInferenceOperator`` running the bundle's TorchScript with the pre/postprocessing, inferer and
metadata stored inside it, keeping float output) → ``DicomSeriesWriterOperator`` (the bundle's
``scripts.dicom_series.write_dicom_series``: HU kept through RescaleSlope/RescaleIntercept, new Series and
SOP UIDs, patient, study and frame of reference copied, ImageType DERIVED\\SECONDARY).

Input policy, the same as the bundles' own inference (``--output_format dicom``): every series under
``DICOM_DIR`` (subfolders too) is checked by the bundle's ``find_series`` before the graph starts, and
each is denoised to its own output folder, ``OUT_DIR/<new SeriesInstanceUID>/``; the network is 2-D,
so a single slice, missing slices and uneven spacing are fine (each output slice keeps its source's
position). A modality other than CT, two slices at one position, slices of different size, spacing or
orientation in one series, truncated pixel data or a compressed transfer syntax that the installed
decoders cannot read stop the app with a ``DicomSeriesError`` naming the file, and nothing is written.

The bundle folder is only read. The TorchScript is ``-m``, else ``<bundle>/models/model.ts`` when it is
at least as new as ``models/model.pt``, else an export of ``models/model.pt`` (``monai.bundle.ckpt_export``)
kept in a cache folder (``--cache-dir``; default ``$XDG_CACHE_HOME/ldct_bundles/torchscript`` or
``~/.cache/ldct_bundles/torchscript``) under a name holding a hash of the weights, configs and scripts, so a
changed bundle is exported again.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from ldct_scripts.bundle_import import activate_bundle_scripts

__all__ = ["main", "cli", "load_bundle_dicom_series", "ensure_torchscript", "default_cache_dir", "bundle_hash", "EXPORT_COMMAND"]

logger = logging.getLogger("ldct_deploy_app")

#: How to export a bundle's TorchScript by hand (run in the bundle folder).
EXPORT_COMMAND = (
    "python -m monai.bundle ckpt_export network_def --filepath models/model.ts --ckpt_file models/model.pt "
    "--meta_file configs/metadata.json --config_file configs/inference.json"
)


def series_rules(series_uid: str) -> str:
    """Selection rules for ``DICOMSeriesSelectorOperator``: the CT series with this SeriesInstanceUID.

    Args:
        series_uid: the series' SeriesInstanceUID.
    """
    # the selector compares strings case-insensitively, then as a regular expression searched anywhere:
    # anchor and escape the UID so that 1.2.3 does not select 1.2.34
    uid = f"^{re.escape(series_uid)}$"
    return json.dumps({"selections": [{"name": "CT series", "conditions": {"Modality": "(?i)^CT$", "SeriesInstanceUID": uid}}]})


def load_bundle_dicom_series(bundle: Path) -> ModuleType:
    """The bundle's ``scripts.dicom_series`` module, with the bundle's ``scripts`` imported under that name.

    The bundle's configs (stored in the TorchScript) name ``scripts.*``, so the bundle's ``scripts``
    package must be the one importable under that name (:func:`ldct_scripts.bundle_import.activate_bundle_scripts`).

    Args:
        bundle: the bundle folder.
    """
    activate_bundle_scripts(bundle)
    return importlib.import_module("scripts.dicom_series")


def default_cache_dir() -> Path:
    """Where exported TorchScripts are kept: ``$XDG_CACHE_HOME/ldct_bundles/torchscript`` (``~/.cache`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ldct_bundles" / "torchscript"


def bundle_hash(bundle: Path) -> str:
    """SHA-256 (hex) of what an export depends on: ``models/model.pt``, ``configs/inference.json``,
    ``configs/metadata.json`` and the bundle's ``scripts/*.py`` (names and contents).

    Args:
        bundle: the bundle folder.
    """
    h = hashlib.sha256()
    files = [bundle / "models" / "model.pt", bundle / "configs" / "inference.json", bundle / "configs" / "metadata.json"]
    files += sorted((bundle / "scripts").glob("*.py"))
    for f in files:
        h.update(f.relative_to(bundle).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def ensure_torchscript(bundle: Path, model: Path | None, cache_dir: Path | None = None) -> Path:
    """The TorchScript to run; nothing is written into the bundle folder.

    ``model`` if given; else ``<bundle>/models/model.ts`` when it is at least as new as ``models/model.pt``;
    else ``models/model.pt`` exported with ``monai.bundle.ckpt_export`` to
    ``<cache_dir>/<bundle name>-<16 hex digits of bundle_hash>.ts`` (reused while the bundle is unchanged;
    written to a temporary name and renamed, so a crash leaves no half file).

    Args:
        bundle: the bundle folder (only read).
        model: a TorchScript given with ``-m``, or ``None``.
        cache_dir: where exports are kept; default :func:`default_cache_dir`.

    Raises:
        FileNotFoundError: ``model`` does not exist, or there are no weights (``models/model.pt``) to
            export; the message gives the export command.
    """
    if model is not None:
        if not model.is_file():
            raise FileNotFoundError(f"-m {model}: no such TorchScript file. Export one in {bundle} with:\n  {EXPORT_COMMAND}")
        return model
    ts = bundle / "models" / "model.ts"
    weights = bundle / "models" / "model.pt"
    if ts.is_file() and (not weights.is_file() or ts.stat().st_mtime >= weights.stat().st_mtime):
        return ts
    if not weights.is_file():
        raise FileNotFoundError(
            f"{bundle}: neither models/model.ts nor models/model.pt exists. Put the bundle's weights in "
            f"models/model.pt (or pass -m MODEL.ts); the app then exports the TorchScript to its cache, as this "
            f"command does in the bundle folder:\n  {EXPORT_COMMAND}"
        )
    if ts.is_file():
        logger.warning(f"{ts} is older than {weights}, so it is not used; exporting the weights instead.")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache_dir / f"{bundle.name}-{bundle_hash(bundle)[:16]}.ts"
    if cached.is_file():
        logger.info(f"Using {cached} (exported earlier from {weights}).")
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    from monai.bundle import ckpt_export

    logger.info(f"Exporting {weights} to {cached} (monai.bundle ckpt_export; the bundle folder is not changed).")
    # Export under the final file name in a temporary folder, then move: the archive's inner folder is named
    # after the file, and the SDK's MonaiBundleInferenceOperator finds the configs only under that name.
    tmp_dir = tempfile.mkdtemp(prefix=f".{cached.name}.", suffix=".partial", dir=cache_dir)
    try:
        ckpt_export(
            net_id="network_def",
            filepath=os.path.join(tmp_dir, cached.name),
            ckpt_file=str(weights),
            meta_file=str(bundle / "configs" / "metadata.json"),
            config_file=str(bundle / "configs" / "inference.json"),
            bundle_root=str(bundle),
        )
        os.replace(os.path.join(tmp_dir, cached.name), cached)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return cached


def _descriptions(bundle: Path) -> tuple[str, str]:
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    version, name = meta.get("version", "?"), meta.get("name", bundle.name)
    series = f"Denoised by {bundle.name} {version}"
    derivation = (
        f"Denoised by the {bundle.name} MONAI bundle {version} ({name}) in a MONAI Deploy app; "
        "research use only, not for diagnostic use"
    )
    return series, derivation


def build_app(
    bundle: Path,
    input_dir: Path,
    output_dir: Path,
    model: Path,
    dicom_series: ModuleType,
    series_uid: str,
    written_folders: list | None = None,
):
    """The Holoscan/MONAI Deploy ``Application`` that denoises the series ``series_uid`` of ``input_dir``
    (imports the SDK); the folder it writes is appended to ``written_folders``.

    Args:
        bundle: the bundle folder.
        input_dir: the folder of DICOM series.
        output_dir: where the derived series go.
        model: the TorchScript.
        dicom_series: the bundle's ``scripts.dicom_series`` module.
        series_uid: the series to denoise.
        written_folders: a list the writer appends the written folder to.
    """
    from ldct_scripts.deploy_app.ldct_operators import DicomSeriesWriterOperator, FloatBundleInferenceOperator, SeriesToVolumeOperator
    from monai.deploy.conditions import CountCondition
    from monai.deploy.core import AppContext, Application, Image
    from monai.deploy.core.io_type import IOType
    from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
    from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
    from monai.deploy.operators.monai_bundle_inference_operator import IOMapping

    series_description, derivation_description = _descriptions(bundle)
    written_folders = written_folders if written_folders is not None else []

    class LDCTDenoiseApp(Application):
        """DICOM CT series → bundle TorchScript (float) → derived DICOM CT series."""

        def compose(self):
            app_context = AppContext({"input": str(input_dir), "output": str(output_dir), "model": str(model)})
            loader = DICOMDataLoaderOperator(self, CountCondition(self, 1), input_folder=input_dir, name="dicom_loader")
            selector = DICOMSeriesSelectorOperator(self, rules=series_rules(series_uid), name="series_selector")
            to_volume = SeriesToVolumeOperator(self, name="series_to_volume")
            infer = FloatBundleInferenceOperator(
                self,
                input_mapping=[IOMapping("image", Image, IOType.IN_MEMORY)],
                output_mapping=[IOMapping("pred", Image, IOType.IN_MEMORY)],
                app_context=app_context,
                bundle_path=model,
                name="bundle_inference",
            )
            writer = DicomSeriesWriterOperator(
                self,
                output_folder=output_dir,
                write_fn=dicom_series.write_dicom_series,
                sort_fn=dicom_series.sort_by_position,
                series_description=series_description,
                derivation_description=derivation_description,
                written_folders=written_folders,
                name="dicom_series_writer",
            )
            self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
            self.add_flow(selector, to_volume, {("study_selected_series_list", "study_selected_series_list")})
            self.add_flow(to_volume, infer, {("image", "image")})
            self.add_flow(infer, writer, {("pred", "image")})
            self.add_flow(selector, writer, {("study_selected_series_list", "study_selected_series_list")})

    return LDCTDenoiseApp()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    p = argparse.ArgumentParser(
        prog="python -m ldct_scripts.deploy_app",
        description="Denoise DICOM CT series with an LDCT bundle in a MONAI Deploy app; writes a derived DICOM "
        "series per input series.",
    )
    p.add_argument("--bundle", required=True, type=Path, help="bundle folder, e.g. bundles/unet_ldct (only read)")
    p.add_argument("-i", "--input", required=True, type=Path,
                   help="folder holding DICOM CT series (subfolders too); each series is denoised on its own")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder; each series goes to OUT/<new SeriesInstanceUID>/")
    p.add_argument("-m", "--model", type=Path, default=None,
                   help="TorchScript from ckpt_export (default: <bundle>/models/model.ts if as new as models/model.pt, "
                   "else an export of models/model.pt kept in --cache-dir)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help=f"where exported TorchScripts are kept (default: {default_cache_dir()})")
    p.add_argument("-l", "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    """Run the app; returns the folders of the written series, one per input series.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.

    Raises:
        DicomSeriesError: (the bundle's) a bad input series; nothing is written.
        FileNotFoundError: a missing bundle, input, TorchScript or weights.
    """
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bundle = args.bundle.resolve()
    if not (bundle / "configs" / "inference.json").is_file():
        raise FileNotFoundError(f"--bundle {args.bundle}: not a bundle folder (no configs/inference.json).")
    if not args.input.is_dir():
        raise FileNotFoundError(f"-i {args.input}: no such folder; pass the folder holding the DICOM CT series.")
    dicom_series = load_bundle_dicom_series(bundle)
    series = dicom_series.find_series(args.input, recursive=True)  # all of them, before anything is loaded or written
    for info in series:
        extra = f"; {info.irregular} (fine: slices are denoised one by one)" if info.irregular else ""
        logger.info(f"Input: series {info.series_uid}, {len(info.files)} slice(s), validated{extra}.")
    model = ensure_torchscript(bundle, args.model.resolve() if args.model else None, args.cache_dir)
    output = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for info in series:
        done = len(written)
        build_app(bundle, args.input.resolve(), output, model.resolve(), dicom_series, info.series_uid, written).run()
        if len(written) != done + 1:
            raise RuntimeError(f"The app finished without writing series {info.series_uid} to {output}; see the log above.")
        print(f"Wrote {written[-1]} (from series {info.series_uid})")
    return written


def cli(argv: list[str] | None = None) -> None:
    """``main`` for the command line: input and setup errors end the program with their message (status 1).

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    try:
        main(argv)
    except (FileNotFoundError, ValueError) as e:  # DicomSeriesError is a ValueError
        sys.exit(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    cli()
