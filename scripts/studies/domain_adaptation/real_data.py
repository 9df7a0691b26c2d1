"""The data of the real-target study (``--preset real``): NIfTI copies of the shared real slices, in the layouts its
two directions need.

* :func:`write_normal_dose`: the normal-dose slices of other patients, in HU, as the simulator's input (S→R source).
* :func:`write_real_source`: one patient's real quarter-/full-dose pairs as a labelled dataset in cm⁻¹, laid out as a
  ``python -m ldct_sim simulate`` output (``datalist.json`` with ``training``/``validation``): the R→S source.
* :func:`write_simulated_test`: a simulated dataset's pairs in HU, ``low_dose/`` and ``full_dose/`` by name, which
  ``python -m ldct_scripts.bench.bench_real`` scores: the R→S test.

The real images never enter the repository; the study writes these files under its results folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ldct_sim.attenuation import hu_to_mu, mu_to_hu
from ldct_sim.io import slice_affine

__all__ = ["write_normal_dose", "write_real_source", "write_simulated_test"]


def _save(path: Path, image: np.ndarray, spacing_mm: float) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(image, dtype=np.float32), slice_affine(spacing_mm, image.shape)), str(path))
    return path


def write_normal_dose(real_dir: Path, out_dir: Path, kernel: str = "B30f") -> list[Path]:
    """The shared normal-dose slices of one kernel as NIfTI in HU, one folder per patient (the simulator's input).

    Args:
        real_dir: the shared real folder (``normal_dose.npz`` with ``hu`` (N, H, W), ``normal_dose.json`` records).
        out_dir: where ``<patient>/<index>.nii.gz`` go.
        kernel: the kernel prefix of the slices kept.
    """
    import nibabel as nib

    records = json.loads((real_dir / "normal_dose.json").read_text())
    hu = np.load(real_dir / "normal_dose.npz")["hu"]
    written = []
    for i, rec in enumerate(records):
        if str(rec.get("kernel", "")).startswith(kernel):
            folder = out_dir / rec["patient"]
            folder.mkdir(parents=True, exist_ok=True)
            mm, thick = float(rec["pixel_spacing_mm"]), float(rec.get("slice_thickness_mm") or 1.0)
            nib.save(nib.Nifti1Image(hu[i].astype(np.float32)[:, :, None], np.diag([mm, mm, thick, 1.0])),
                     str(folder / f"{i:02d}.nii.gz"))
            written.append(folder / f"{i:02d}.nii.gz")
    return written


def write_real_source(real_dir: Path, out_dir: Path, patient: str, kernel: str = "B30f", n_validation: int = 2,
                      energy_kev: float = 60.0) -> Path:
    """One patient's real pairs of one kernel as a labelled dataset in cm⁻¹: ``out_dir/datalist.json``.

    Inputs are the quarter-dose images, labels their full-dose partners, both ``μ = (HU/1000 + 1)·μ_water`` with
    HU below −1000 raised to −1000 (as the simulator converts). Every ``len // n_validation``-th pair, in the
    order of ``dev_pairs.npz``, is a validation pair (they select the model); the others train.

    Args:
        real_dir: the shared real folder (``dev_pairs.npz`` and ``dev_pairs.json``).
        out_dir: the dataset folder (``input/``, ``label/``, ``datalist.json``).
        patient: the patient id whose pairs are used.
        kernel: the kernel prefix of the pairs kept.
        n_validation: validation pairs, >= 1.
        energy_kev: the energy of μ_water (keV); the bundles' 60 keV.

    Returns:
        The datalist's path.

    Raises:
        ValueError: fewer than ``n_validation + 1`` pairs of that patient and kernel.
    """
    records = json.loads((real_dir / "dev_pairs.json").read_text())
    with np.load(real_dir / "dev_pairs.npz") as d:
        qd, fd = d["quarter_dose_hu"], d["full_dose_hu"]
    keep = [i for i, r in enumerate(records) if r.get("patient") == patient and str(r.get("kernel", "")).startswith(kernel)]
    if len(keep) < n_validation + 1 or n_validation < 1:
        raise ValueError(f"write_real_source: {len(keep)} {kernel} pair(s) of {patient} in {real_dir}; need at least "
                         f"{n_validation + 1} for {n_validation} validation pair(s).")
    step = len(keep) // n_validation
    validation = set(keep[::step][:n_validation])
    datalist: dict[str, list] = {"training": [], "validation": []}
    for i in keep:
        name, mm = f"{records[i]['id']}.nii.gz", float(records[i]["pixel_spacing_mm"])
        for role, hu in (("input", qd[i]), ("label", fd[i])):
            _save(out_dir / role / name, hu_to_mu(np.maximum(hu.astype(np.float64), -1000.0), energy_kev), mm)
        datalist["validation" if i in validation else "training"].append({"image": f"input/{name}", "label": f"label/{name}"})
    path = out_dir / "datalist.json"
    path.write_text(json.dumps(datalist, indent=1))
    return path


def write_simulated_test(dataset_dir: Path, out_dir: Path, energy_kev: float = 60.0) -> list[str]:
    """Every pair of a simulated dataset (all its splits) in HU: ``out_dir/low_dose/`` and ``out_dir/full_dose/``.

    Args:
        dataset_dir: a ``python -m ldct_sim simulate`` unit folder (``datalist.json``; images in cm⁻¹).
        out_dir: where the HU pairs go, one file name per pair in both folders.
        energy_kev: the energy of the simulation's μ_water (keV).

    Returns:
        The pairs' file names, sorted.
    """
    import nibabel as nib

    datalist = json.loads((dataset_dir / "datalist.json").read_text())
    names = []
    for item in (it for split in ("training", "validation", "test") for it in datalist.get(split) or []):
        name = Path(item["image"]).name
        for key, folder in (("image", "low_dose"), ("label", "full_dose")):
            img = nib.load(str(dataset_dir / item[key]))
            hu = mu_to_hu(np.asarray(img.dataobj, dtype=np.float64), energy_kev)
            _save(out_dir / folder / name, hu, float(np.linalg.norm(img.affine[:3, 0])))
        names.append(name)
    return sorted(names)
