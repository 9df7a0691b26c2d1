"""Two simulated CT domains for cross-domain denoising, written as NIfTI files with datalists (uses ``ldct_sim``).

* **real** (``R``): projection-domain simulation at one scanner geometry (``--real_preset``, a Table 1
  system of the resolution-transfer study): Poisson noise on the transmission counts at
  ``--real_i0`` (default: the preset's input dose), fan-beam FBP. The normal-dose label is the same scan
  at ``--real_label_i0`` (default: the preset's label dose).
* **synthetic** (``S``): normal-dose images plus noise extracted from low-dose scans of *another*
  geometry and dose, added in the image domain (the noise-extraction method of Chen et al., ISICDM 2020,
  that the seed uses to build its synthetic set). Normal-dose images: scans of phantoms at
  ``--synthetic_preset`` and its label dose. Noise bank: noise-only images (low-dose minus noiseless FBP)
  of other phantoms at ``--synthetic_preset`` and ``--synthetic_i0``; each synthetic low-dose image is a
  normal-dose image plus a randomly chosen, randomly flipped/transposed noise image.

Every image is linear attenuation in cm⁻¹ at 60 keV (water ``helpers.MU_WATER_60KEV`` cm⁻¹), ``n_pixels × n_pixels``,
float32 NIfTI with the pixel size in its affine. The phantoms of every domain and split are distinct
(disjoint seeds). Files and datalists (paths relative to ``output_dir``)::

    real/{train,validation,test}/<k>_{ldct,ndct}.nii.gz
    synthetic/{train,validation,test}/<k>_{ldct,ndct}.nii.gz
    datalist_s2r.json   source = S train pairs, target = R train low-dose images (unlabelled),
                        validation = S validation pairs (model selection never reads a target label),
                        test = R pairs
    datalist_r2s.json   the reverse
    domains.json        everything that defines the data (geometries, doses, seeds, versions)

Usage (from the bundle root)::

    python -m scripts.domains --output_dir data/cross_domain
    python -m scripts.domains --output_dir /tmp/tiny --n_pixels 64 --n_views 90 --n_train 4 --n_validation 2 --n_test 2
    python -m scripts.domains --output_dir data/shipped --from_datasets /data/src/res625um /data/tgt/res250um
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from pathlib import Path

import numpy as np

__all__ = ["make_domains", "datalist_from_datasets", "main"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_SEED_OFFSETS = {"real": 0, "synthetic": 100_000, "noise": 200_000}


def _save_nifti(path: Path, image: np.ndarray, pixel_mm: float) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([pixel_mm, pixel_mm, 1.0, 1.0])
    nib.save(nib.Nifti1Image(np.asarray(image, dtype=np.float32), affine), str(path))


def _phantoms(n_pixels: int, seeds) -> np.ndarray:
    from ldct_sim import hu_to_mu
    from ldct_sim.phantoms import abdominal_phantom

    return np.stack([hu_to_mu(abdominal_phantom(n_pixels, seed=int(s))) for s in seeds]).astype(np.float32)


def _geometry(preset_um: float, n_pixels: int, n_views: int | None):
    from ldct_sim import get_preset

    preset = get_preset(preset_um)
    changes = {"n_pixels": n_pixels}
    if n_views is not None:
        changes["n_views"] = n_views
    return preset, preset.geometry(**changes)


def make_domains(
    output_dir: str | os.PathLike,
    *,
    n_pixels: int = 512,
    n_views: int | None = None,
    n_train: int = 200,
    n_validation: int = 20,
    n_test: int = 50,
    real_preset: float = 625.0,
    real_i0: float | None = None,
    real_label_i0: float | None = None,
    synthetic_preset: float = 250.0,
    synthetic_i0: float | None = None,
    synthetic_label_i0: float | None = None,
    noise_bank: int | None = None,
    backend: str = "astra",
    seed: int = 0,
    batch: int = 16,
) -> dict:
    """Simulate both domains and write them with the two datalists; returns the ``domains.json`` record.

    Args:
        output_dir: folder to write (created).
        n_pixels: image side in pixels. Default 512.
        n_views: views over 360°; default ``ldct_sim``'s default.
        n_train, n_validation, n_test: images per split and domain.
        real_preset: Table 1 system (µm) of the real domain. Default 625.
        real_i0, real_label_i0: low and normal dose (photons per element per view) of the real domain;
            default the preset's input and label doses.
        synthetic_preset: Table 1 system (µm) of the synthetic domain's scans and noise. Default 250.
        synthetic_i0, synthetic_label_i0: dose of the noise bank and of the normal-dose images of the
            synthetic domain; default the preset's input and label doses.
        noise_bank: number of noise-only images to draw from; default ``n_train + n_validation + n_test``.
        backend: ``ldct_sim`` projector backend. Default ``"astra"``.
        seed: base seed of phantoms, noise and pairing.
        batch: images simulated per FBP call.
    """
    import ldct_sim
    from ldct_sim import mu_water

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"train": n_train, "validation": n_validation, "test": n_test}
    for split, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"make_domains: `n_{split}` must be a positive integer, got {n!r}.")
    rng = np.random.default_rng(seed)
    record: dict = {
        "units": "linear attenuation, cm^-1 at 60 keV",
        "mu_water_cm": mu_water(),
        "seed": seed,
        "n_pixels": n_pixels,
        "backend": backend,
        "versions": {"ldct_sim": ldct_sim.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "domains": {},
    }
    items: dict[str, dict[str, list[dict]]] = {}
    sizes = {"n_pixels": n_pixels, "n_views": n_views, "backend": backend, "seed": seed, "batch": batch}
    items["real"], record["domains"]["real"] = _real_domain(out, counts, real_preset, real_i0, real_label_i0, **sizes)
    items["synthetic"], record["domains"]["synthetic"] = _synthetic_domain(
        out, counts, synthetic_preset, synthetic_i0, synthetic_label_i0, noise_bank, rng, **sizes
    )
    _write_datalists(out, items)
    (out / "domains.json").write_text(json.dumps(record, indent=1, default=float))
    logger.info("make_domains: wrote %s", out)
    return record


def _real_domain(out: Path, counts: dict, preset_um: float, i0: float | None, label_i0: float | None, *, n_pixels: int,
                 n_views: int | None, backend: str, seed: int, batch: int) -> tuple[dict, dict]:
    """The real domain (projection-domain simulation), written under ``out/real``.

    Returns:
        ``(datalist items per split, the domain's record)``.
    """
    from ldct_sim import LowDoseSimulator, mu_water

    preset, geom = _geometry(preset_um, n_pixels, n_views)
    i0, label_i0 = i0 or preset.input_i0, label_i0 or preset.label_i0
    sim = LowDoseSimulator(geom, backend=backend)
    noise_std = []
    items: dict[str, list[dict]] = {}
    for s_idx, split in enumerate(SPLITS):
        seeds = seed + _SEED_OFFSETS["real"] + 10_000 * s_idx + np.arange(counts[split])
        items[split] = []
        for start in range(0, len(seeds), batch):
            mu = _phantoms(n_pixels, seeds[start : start + batch])
            res = sim.run(mu, [i0, label_i0], noiseless=True, seed=int(seeds[start]) + 7)
            ldct, ndct, noise = res.low_dose[0].numpy(), res.low_dose[1].numpy(), res.noise[0].numpy()
            noise_std.append(float(noise[mu > 0.5 * mu_water()].std()))
            for k in range(len(mu)):
                idx = start + k
                rel = {t: f"real/{split}/{idx:04d}_{t}.nii.gz" for t in ("ldct", "ndct")}
                _save_nifti(out / rel["ldct"], ldct[k], geom.pixel_size_mm)
                _save_nifti(out / rel["ndct"], ndct[k], geom.pixel_size_mm)
                items[split].append({"image": rel["ldct"], "label": rel["ndct"]})
    record = {
        "method": "projection domain: Poisson on transmission counts, fan-beam FBP (ldct_sim.LowDoseSimulator)",
        "preset_um": preset_um,
        "geometry": geom.to_dict(),
        "input_i0": i0,
        "label_i0": label_i0,
        "noise_std_cm_in_body": float(np.mean(noise_std)),
        **sim.config(),
    }
    return items, record


def _noise_bank(sim_s, n_pixels: int, n_bank: int, i0_s: float, seed: int,
                batch: int) -> tuple[np.ndarray, list[float]]:
    """``n_bank`` noise-only images (low-dose minus noiseless FBP, cm⁻¹) and each batch's noise SD in the body."""
    from ldct_sim import mu_water

    bank_seeds = seed + _SEED_OFFSETS["noise"] + np.arange(n_bank)
    bank, bank_std = [], []
    for start in range(0, n_bank, batch):
        mu = _phantoms(n_pixels, bank_seeds[start : start + batch])
        noise = sim_s.run(mu, [i0_s], noiseless=True, seed=int(bank_seeds[start]) + 11).noise[0].numpy()
        bank_std.append(float(noise[mu > 0.5 * mu_water()].std()))
        bank.append(noise)
    return np.concatenate(bank), bank_std


def _synthetic_domain(out: Path, counts: dict, preset_um: float, i0: float | None, label_i0: float | None,
                      noise_bank: int | None, rng: np.random.Generator, *, n_pixels: int, n_views: int | None,
                      backend: str, seed: int, batch: int) -> tuple[dict, dict]:
    """The synthetic domain (normal dose + extracted noise), written under ``out/synthetic``.

    Returns:
        ``(datalist items per split, the domain's record)``; draws the noise picks and flips from ``rng``.
    """
    from ldct_sim import LowDoseSimulator

    preset_s, geom_s = _geometry(preset_um, n_pixels, n_views)
    i0_s, label_i0_s = i0 or preset_s.input_i0, label_i0 or preset_s.label_i0
    sim_s = LowDoseSimulator(geom_s, backend=backend)
    n_bank = noise_bank or sum(counts.values())
    bank, bank_std = _noise_bank(sim_s, n_pixels, n_bank, i0_s, seed, batch)
    items: dict[str, list[dict]] = {}
    for s_idx, split in enumerate(SPLITS):
        seeds = seed + _SEED_OFFSETS["synthetic"] + 10_000 * s_idx + np.arange(counts[split])
        items[split] = []
        for start in range(0, len(seeds), batch):
            mu = _phantoms(n_pixels, seeds[start : start + batch])
            ndct = sim_s.run(mu, [label_i0_s], noiseless=False, seed=int(seeds[start]) + 13).low_dose[0].numpy()
            for k in range(len(mu)):
                idx = start + k
                noise = bank[rng.integers(n_bank)]
                if rng.random() < 0.5:
                    noise = noise[:, ::-1]
                if rng.random() < 0.5:
                    noise = noise[::-1, :]
                if rng.random() < 0.5:
                    noise = noise.T
                rel = {t: f"synthetic/{split}/{idx:04d}_{t}.nii.gz" for t in ("ldct", "ndct")}
                _save_nifti(out / rel["ldct"], ndct[k] + noise, geom_s.pixel_size_mm)
                _save_nifti(out / rel["ndct"], ndct[k], geom_s.pixel_size_mm)
                items[split].append({"image": rel["ldct"], "label": rel["ndct"]})
    record = {
        "method": "image domain: normal-dose scan + noise-only image (low-dose minus noiseless FBP) of other "
        "phantoms, randomly flipped/transposed (noise extraction, Chen et al. 2020)",
        "preset_um": preset_um,
        "geometry": geom_s.to_dict(),
        "noise_i0": i0_s,
        "label_i0": label_i0_s,
        "noise_bank": n_bank,
        "noise_std_cm_in_body": float(np.mean(bank_std)),
        **sim_s.config(),
    }
    return items, record


def _write_datalists(out: Path, items: dict) -> None:
    """Write ``datalist_s2r.json`` and ``datalist_r2s.json``.

    Each: source train pairs, unlabelled target train images, source validation pairs, target test pairs.
    """
    for name, src, tgt in (("datalist_s2r.json", "synthetic", "real"), ("datalist_r2s.json", "real", "synthetic")):
        datalist = {
            "source": items[src]["train"],
            "target": [{"image": it["image"]} for it in items[tgt]["train"]],
            "validation": items[src]["validation"],  # model selection on source pairs: no target label
            "test": items[tgt]["test"],
        }
        (out / name).write_text(json.dumps(datalist, indent=1))


def datalist_from_datasets(source: str | os.PathLike, target: str | os.PathLike, output: str | os.PathLike) -> dict:
    """A cross-domain datalist from two ``python -m ldct_sim simulate`` dataset folders (``.../res<R>um``).

    ``source``: its training pairs become ``source``; ``target``: its training inputs become the unlabelled
    ``target`` list, and its test pairs are the test; validation (model selection) uses the source's
    validation pairs, so that no target label is read before the test. Paths in the
    written file are relative to its folder, as ``load_datalist`` expects. The shipped weights are trained
    on such a list (source over a range of doses; see the model card).
    """
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)

    def read(folder):
        folder = Path(folder).resolve()
        path = folder / "datalist.json"
        if not path.is_file():
            raise FileNotFoundError(f"datalist_from_datasets: no datalist.json in {str(folder)!r}; pass a "
                                    "`res<R>um` folder written by `python -m ldct_sim simulate`.")
        return folder, json.loads(path.read_text())

    def rel(folder, item, keys):
        return {k: os.path.relpath(folder / item[k], output.parent) for k in keys}

    (src_dir, src), (tgt_dir, tgt) = read(source), read(target)
    datalist = {
        "source": [rel(src_dir, it, ("image", "label")) for it in src["training"]],
        "target": [rel(tgt_dir, it, ("image",)) for it in tgt["training"]],
        "validation": [rel(src_dir, it, ("image", "label")) for it in src["validation"]],  # selection without target labels
        "test": [rel(tgt_dir, it, ("image", "label")) for it in tgt["test"]],
        "made_from": {"source": str(src_dir), "target": str(tgt_dir)},
    }
    output.write_text(json.dumps(datalist, indent=1))
    logger.info("datalist_from_datasets: wrote %s (%d source pairs, %d target images)", output,
                len(datalist["source"]), len(datalist["target"]))
    return datalist


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="Simulate the real and synthetic CT domains (NIfTI + datalists).")
    p.add_argument("--output_dir", required=True, help="folder to write")
    p.add_argument("--n_pixels", type=int, default=512)
    p.add_argument("--n_views", type=int, default=None)
    p.add_argument("--n_train", type=int, default=200)
    p.add_argument("--n_validation", type=int, default=20)
    p.add_argument("--n_test", type=int, default=50)
    p.add_argument("--real_preset", type=float, default=625.0, help="Table 1 system of the real domain, µm")
    p.add_argument("--real_i0", type=float, default=None)
    p.add_argument("--real_label_i0", type=float, default=None)
    p.add_argument("--synthetic_preset", type=float, default=250.0, help="Table 1 system of the synthetic domain, µm")
    p.add_argument("--synthetic_i0", type=float, default=None)
    p.add_argument("--synthetic_label_i0", type=float, default=None)
    p.add_argument("--noise_bank", type=int, default=None)
    p.add_argument("--backend", default="astra")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--from_datasets", nargs=2, metavar=("SOURCE", "TARGET"), default=None,
                   help="instead of simulating: write <output_dir>/datalist.json from two `ldct_sim simulate` "
                   "dataset folders (res<R>um)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.from_datasets:
        return datalist_from_datasets(*args.from_datasets, Path(args.output_dir) / "datalist.json")
    return make_domains(args.output_dir, **{k: v for k, v in vars(args).items() if k not in ("output_dir", "from_datasets")})


if __name__ == "__main__":
    main()
