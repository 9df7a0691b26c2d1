"""Make the sample data shipped in ``bundles/unet_ldct/sample_data``: one simulated LDCT/NDCT slice pair.

A seeded abdominal phantom (HU) becomes attenuation at 60 keV (cm⁻¹) and is scanned with the fan-beam
system of the resolution-transfer study's 625 µm preset (Table 1 of Zhang et al., QIMS 2024: SOD
750 mm, SDD 1500 mm, 0.625 mm pixels), here on a smaller matrix, at the preset's input dose (the
low-dose input) and its label dose (the normal-dose label), with Poisson noise on the counts and
fan-beam FBP. Writes

* ``<out>/input/<name>.nii.gz``: low-dose input, float32 cm⁻¹, NIfTI affine carrying the pixel size;
* ``<out>/label/<name>.nii.gz``: the normal-dose label, same format;
* ``<out>/datalist.json``: a MONAI datalist listing the pair under ``training``, ``validation`` and
  ``test`` (so every config of the bundle runs out of the box; smoke tests only: the splits overlap);
* ``<out>/provenance.json``: geometry, doses, seeds, measured noise, git commit and package versions.

Usage:
    python -m ldct_scripts.examples.make_sample_data
    python -m ldct_scripts.examples.make_sample_data --n-pixels 128 --seed 3 --out /tmp/sample
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from ldct_scripts import BUNDLES_DIR
from ldct_sim import LowDoseSimulator, get_preset, hu_to_mu, mu_water
from ldct_sim.phantoms import abdominal_phantom
from ldct_sim.provenance import provenance

logger = logging.getLogger("make_sample_data")

DEFAULT_OUT = BUNDLES_DIR / "unet_ldct" / "sample_data"


def parse_args(argv=None) -> argparse.Namespace:
    """The command line.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--resolution", type=float, default=625.0, help="Table 1 preset in µm (default 625)")
    p.add_argument("--n-pixels", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--n-views", type=int, default=None, help="views over 360° (default: ldct_sim's default)")
    p.add_argument("--backend", default="astra", help="astra, torch or tomosipo (default astra)")
    p.add_argument("--seed", type=int, default=2024, help="seed of the phantom and of the noise (default 2024)")
    p.add_argument("--name", default="abdomen_625um", help="file stem (default abdomen_625um)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Simulate the sample pair and write it, ``datalist.json`` and ``provenance.json``; returns the provenance record.

    Args:
        args: what :func:`parse_args` returned.
    """
    preset = get_preset(args.resolution)
    changes = {"n_pixels": args.n_pixels}
    if args.n_views:
        changes["n_views"] = args.n_views
    geom = preset.geometry(**changes)
    hu = abdominal_phantom(args.n_pixels, seed=args.seed)
    sim = LowDoseSimulator(geom, backend=args.backend)
    out = sim.run(hu_to_mu(hu), [preset.input_i0, preset.label_i0], noiseless=True, seed=args.seed)
    ldct, ndct = (x.numpy().astype(np.float32) for x in out.low_dose)
    body = hu > -500
    noise = {
        name: float((img - out.noiseless.numpy())[body].std() * 1000.0 / mu_water())
        for name, img in (("input", ldct), ("label", ndct))
    }
    affine = np.diag([geom.pixel_size_mm, geom.pixel_size_mm, 1.0, 1.0])
    for folder, img in (("input", ldct), ("label", ndct)):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
        nii = nib.Nifti1Image(img, affine)
        nii.header.set_xyzt_units("mm")
        nib.save(nii, args.out / folder / f"{args.name}.nii.gz")
    item = {"image": f"input/{args.name}.nii.gz", "label": f"label/{args.name}.nii.gz", "id": args.name}
    (args.out / "datalist.json").write_text(
        json.dumps({"training": [item], "validation": [item], "test": [item]}, indent=2) + "\n"
    )
    record = {
        "phantom": "ldct_sim.phantoms.abdominal_phantom",
        "seed": args.seed,
        "unit": "cm^-1 (linear attenuation at 60 keV)",
        "mu_water_cm": mu_water(),
        "resolution_um": args.resolution,
        "input_i0": preset.input_i0,
        "label_i0": preset.label_i0,
        "noise_std_hu_in_body": noise,
        **sim.config(),
        **provenance(),
    }
    (args.out / "provenance.json").write_text(json.dumps(record, indent=2) + "\n")
    logger.info("noise in the body: input %.1f HU, label %.1f HU", noise["input"], noise["label"])
    return record


def main(argv=None) -> int:
    """Write the sample data; exit status 0.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    run(args)
    print(f"wrote the sample pair, datalist.json and provenance.json under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
