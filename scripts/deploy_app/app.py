"""MONAI Deploy App SDK application: a DICOM CT series in, a denoised DICOM CT series out.

    python scripts/deploy_app/app.py --bundle bundles/unet_ldct -i DICOM_SERIES_DIR -o OUT_DIR [-m MODEL.ts]

Pipeline (MONAI Deploy App SDK 4.0, Holoscan): ``DICOMDataLoaderOperator`` → ``DICOMSeriesSelectorOperator``
(Modality CT) → ``DICOMSeriesToVolumeOperator`` (HU) → ``FloatBundleInferenceOperator`` (the SDK's
``MonaiBundleInferenceOperator`` running the bundle's TorchScript with the pre/postprocessing, inferer and
metadata stored inside it, keeping float output) → ``DicomSeriesWriterOperator`` (the bundle's
``scripts.dicom_series.write_dicom_series``: HU kept through RescaleSlope/RescaleIntercept, new Series and
SOP Instance UIDs, patient and study copied, ImageType DERIVED\\SECONDARY).

Before the graph starts the input is checked by the bundle's ``validate_series``: a folder with several
series, missing slices or uneven spacing, a modality other than CT or a compressed transfer syntax that
the installed decoders cannot read stop the app with a ``DicomSeriesError`` naming the problem, and
nothing is written. The output goes to ``OUT_DIR/<new SeriesInstanceUID>/``.

Without ``-m``, ``<bundle>/models/model.ts`` is used, exported first from ``<bundle>/models/model.pt``
with ``monai.bundle.ckpt_export`` when it does not exist.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["main", "cli", "load_bundle_dicom_series", "ensure_torchscript", "EXPORT_COMMAND"]

logger = logging.getLogger("ldct_deploy_app")

#: How to export a bundle's TorchScript by hand (run in the bundle folder).
EXPORT_COMMAND = (
    "python -m monai.bundle ckpt_export network_def --filepath models/model.ts --ckpt_file models/model.pt "
    "--meta_file configs/metadata.json --config_file configs/inference.json"
)

#: Series selection rule of the app: the CT series (the input is validated to hold exactly one series).
CT_RULES = json.dumps({"selections": [{"name": "CT series", "conditions": {"Modality": "(?i)CT"}}]})


def load_bundle_dicom_series(bundle: Path) -> ModuleType:
    """The bundle's ``scripts.dicom_series`` module, with the bundle root first on ``sys.path``.

    The bundle's configs (stored in the TorchScript) name ``scripts.*``, so the bundle's ``scripts``
    package must be the one importable under that name; a ``scripts`` package imported from elsewhere
    is dropped from ``sys.modules`` first.
    """
    root = str(bundle.resolve())
    mod = sys.modules.get("scripts")
    if mod is not None and not str(getattr(mod, "__file__", "") or "").startswith(root + os.sep):
        for name in [n for n in sys.modules if n == "scripts" or n.startswith("scripts.")]:
            del sys.modules[name]
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    return importlib.import_module("scripts.dicom_series")


def ensure_torchscript(bundle: Path, model: Path | None) -> Path:
    """The TorchScript to run: ``model`` if given, else ``<bundle>/models/model.ts``, exported when missing.

    Raises:
        FileNotFoundError: ``model`` does not exist, or there are no weights (``models/model.pt``) to
            export; the message gives the export command.
    """
    if model is not None:
        if not model.is_file():
            raise FileNotFoundError(f"-m {model}: no such TorchScript file. Export one in {bundle} with:\n  {EXPORT_COMMAND}")
        return model
    ts = bundle / "models" / "model.ts"
    if ts.is_file():
        return ts
    weights = bundle / "models" / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(
            f"{bundle}: neither models/model.ts nor models/model.pt exists. Put the bundle's weights in "
            f"models/model.pt (or pass -m MODEL.ts); the app then exports the TorchScript, as this command does "
            f"in the bundle folder:\n  {EXPORT_COMMAND}"
        )
    from monai.bundle import ckpt_export

    logger.info(f"Exporting {ts} from {weights} (monai.bundle ckpt_export).")
    ckpt_export(
        net_id="network_def",
        filepath=str(ts),
        ckpt_file=str(weights),
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
    )
    return ts


def _descriptions(bundle: Path) -> tuple[str, str]:
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    version, name = meta.get("version", "?"), meta.get("name", bundle.name)
    series = f"Denoised by {bundle.name} {version}"
    derivation = (
        f"Denoised by the {bundle.name} MONAI bundle {version} ({name}) in a MONAI Deploy app; "
        "research use only, not for diagnostic use"
    )
    return series, derivation


def build_app(bundle: Path, input_dir: Path, output_dir: Path, model: Path, dicom_series: ModuleType):
    """The Holoscan/MONAI Deploy ``Application`` (imports the SDK)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from ldct_operators import DicomSeriesWriterOperator, FloatBundleInferenceOperator
    from monai.deploy.conditions import CountCondition
    from monai.deploy.core import AppContext, Application, Image
    from monai.deploy.core.io_type import IOType
    from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
    from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
    from monai.deploy.operators.dicom_series_to_volume_operator import DICOMSeriesToVolumeOperator
    from monai.deploy.operators.monai_bundle_inference_operator import IOMapping

    series_description, derivation_description = _descriptions(bundle)

    class LDCTDenoiseApp(Application):
        """DICOM CT series → bundle TorchScript (float) → derived DICOM CT series."""

        def compose(self):
            app_context = AppContext({"input": str(input_dir), "output": str(output_dir), "model": str(model)})
            loader = DICOMDataLoaderOperator(self, CountCondition(self, 1), input_folder=input_dir, name="dicom_loader")
            selector = DICOMSeriesSelectorOperator(self, rules=CT_RULES, name="series_selector")
            to_volume = DICOMSeriesToVolumeOperator(self, name="series_to_volume")
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
                name="dicom_series_writer",
            )
            self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
            self.add_flow(selector, to_volume, {("study_selected_series_list", "study_selected_series_list")})
            self.add_flow(to_volume, infer, {("image", "image")})
            self.add_flow(infer, writer, {("pred", "image")})
            self.add_flow(selector, writer, {("study_selected_series_list", "study_selected_series_list")})

    return LDCTDenoiseApp()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python scripts/deploy_app/app.py",
        description="Denoise a DICOM CT series with an LDCT bundle in a MONAI Deploy app; writes a derived DICOM series.",
    )
    p.add_argument("--bundle", required=True, type=Path, help="bundle folder, e.g. bundles/unet_ldct")
    p.add_argument("-i", "--input", required=True, type=Path, help="folder holding one DICOM CT series")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder; the series goes to OUT/<SeriesInstanceUID>/")
    p.add_argument("-m", "--model", type=Path, default=None, help="TorchScript from ckpt_export (default: <bundle>/models/model.ts)")
    p.add_argument("-l", "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    """Run the app; returns the folders of the written series.

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
        raise FileNotFoundError(f"-i {args.input}: no such folder; pass the folder holding one DICOM CT series.")
    dicom_series = load_bundle_dicom_series(bundle)
    info = dicom_series.validate_series(args.input, recursive=True)  # before anything is loaded or written
    logger.info(f"Input: series {info.series_uid}, {len(info.files)} slice(s), validated.")
    model = ensure_torchscript(bundle, args.model.resolve() if args.model else None)
    output = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    before = {p for p in output.iterdir() if p.is_dir()}
    build_app(bundle, args.input.resolve(), output, model.resolve(), dicom_series).run()
    written = sorted(p for p in output.iterdir() if p.is_dir() and p not in before and not p.name.startswith("."))
    if not written:
        raise RuntimeError(f"The app finished without writing a series to {output}; see the log above.")
    for p in written:
        print(f"Wrote {p}")
    return written


def cli(argv: list[str] | None = None) -> None:
    """``main`` for the command line: input and setup errors end the program with their message (status 1)."""
    try:
        main(argv)
    except (FileNotFoundError, ValueError) as e:  # DicomSeriesError is a ValueError
        sys.exit(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    cli()
