"""The dataset build (see :mod:`ldct_sim.dataset` for the layout and guarantees): inventory, shards, jobs."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from .dataset import (
    FORMAT,
    PHANTOM_FOV_MM,
    ROLES,
    BuildSummary,
    DatasetConfig,
    _Job,
    _unit_label,
    assign_splits,
    derive_seed,
    parse_shard,
    resolution_dirname,
)
from .dataset_files import _files, _is_done, _read_json, _write_json, _write_nifti
from .dataset_index import write_index
from .io import CTReadError, CTSource, ReadFailure, check_nifti_unit, check_output_folder, find_ct, slice_affine, slice_id
from .phantoms import abdominal_phantom
from .provenance import provenance
from .simulate import LowDoseSimulator
from .transforms.array import HUToMu, ResampleToResolution, simulate_low_dose_pair

__all__ = ["build_dataset"]

# The name the builder has always logged under (its warnings are part of its interface).
logger = logging.getLogger("ldct_sim.dataset")


# ---------------------------------------------------------------------------------------------------
# inventory and splits
# ---------------------------------------------------------------------------------------------------
def _inventory(input_path, phantoms: int | None, config: DatasetConfig):
    failures: list[ReadFailure] = []
    sources: dict[str, CTSource] = {}
    jobs: list[_Job] = []
    if phantoms is not None:
        for k in range(phantoms):
            sid = f"phantom_{k:04d}"
            jobs.append(_Job(slice_id(sid, 0), sid, sid, 0, None, derive_seed(config.seed, sid, "anatomy")))
    else:
        inv = find_ct(input_path)
        failures.extend(inv.failures)
        for src in inv.sources:
            sources[src.source_id] = src
            for i in range(src.n_slices):
                path = src.paths[0] if src.kind == "nifti" or len(src.paths) == 1 else src.paths[i]
                jobs.append(_Job(src.slice_id(i), src.source_id, src.group_id, i, path))
    jobs.sort(key=lambda j: (j.source_id, j.index))
    return jobs, sources, failures


def _splits_for(jobs: list[_Job], fractions, seed: int) -> tuple[dict[str, str], str]:
    """Split by patient group; with one group, by volume (anonymised data may share one PatientID); else by slice."""
    for attr, name in (("group_id", "group"), ("source_id", "volume")):
        units = Counter(getattr(j, attr) for j in jobs)
        if len(units) > 1:
            by_unit = assign_splits(dict(units), fractions, seed)
            return {j.slice_id: by_unit[getattr(j, attr)] for j in jobs}, name
    return assign_splits({j.slice_id: 1 for j in jobs}, fractions, seed), "slice"




# ---------------------------------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------------------------------
def _load_slice(job: _Job, sources: dict[str, CTSource], config: DatasetConfig) -> tuple[np.ndarray, tuple[float, float]]:
    if job.phantom_seed is not None:
        hu = abdominal_phantom(config.phantom_size, seed=job.phantom_seed)
        return hu, (PHANTOM_FOV_MM / config.phantom_size,) * 2
    sl = sources[job.source_id].read_slice(job.index)
    return sl.hu, sl.spacing_mm


def _check_out_dir(out: Path) -> None:
    """Refuse an output path that is a file, or lies under one, before anything is written."""
    try:
        check_output_folder(out)
    except NotADirectoryError as e:
        raise ValueError(f"build_dataset: the output folder (`out_dir`, --out) {e}.") from None


def _check_units(sources: dict[str, CTSource], config: DatasetConfig) -> None:
    """Refuse NIfTI inputs whose values do not look like ``config.input_unit`` (before anything is written)."""
    for src in sources.values():
        if src.kind == "nifti":
            check_nifti_unit(src.paths[0], config.input_unit)


def _check_existing(out: Path, config: DatasetConfig) -> None:
    inv = _read_json(out / "inventory.json")
    if not isinstance(inv, dict) or "config" not in inv:
        return
    old = {k: v for k, v in inv["config"].items() if k != "resolutions"}
    new = config.settings()
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        changes = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        raise ValueError(
            f"build_dataset: `out_dir` {str(out)!r} holds a dataset made with other settings ({changes}); "
            "choose another output folder or delete it."
        )


def build_dataset(
    out_dir,
    config: DatasetConfig | None = None,
    *,
    input_path=None,
    phantoms: int | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool | None = None,
    check_unit: bool = True,
) -> BuildSummary:
    """Simulate a dataset into ``out_dir`` (see :mod:`ldct_sim.dataset` for the layout and guarantees).

    Args:
        out_dir: output folder (created; may hold a previous run to resume).
        config: the settings; default :class:`DatasetConfig()` (all six presets, seed 0).
        input_path: a DICOM file or series folder, a NIfTI file, or a folder of them.
        phantoms: instead of ``input_path``, generate this many procedural phantom slices.
        shard: ``(i, n)``: process slices ``i, i+n, i+2n, ...`` of the inventory.
        progress: show a tqdm progress bar; ``None`` (default) shows it only on a terminal.
        check_unit: refuse NIfTI inputs whose values do not look like ``config.input_unit`` (μ read as
            HU gives a near-uniform, wrong dataset). Default True; False reads them in that unit anyway.

    Returns:
        :class:`BuildSummary` of this run.

    Raises:
        ValueError: both or neither of ``input_path`` and ``phantoms``; nothing found at ``input_path``;
            ``out_dir`` made with other settings, or a file; a bad shard; a NIfTI input whose values look
            like another unit than ``config.input_unit`` (``CTReadError``, naming the file).
        FileNotFoundError: ``input_path`` does not exist.
    """
    config = config or DatasetConfig()
    _check_request(input_path, phantoms)
    i_shard, n_shard = parse_shard(f"{shard[0]}/{shard[1]}")
    out = Path(out_dir)
    _check_out_dir(out)
    _check_existing(out, config)
    jobs, sources, read_failures = _inventory(input_path, phantoms, config)
    if not jobs and not read_failures:
        raise ValueError(f"build_dataset: no DICOM or NIfTI CT found at {str(input_path)!r}.")
    if check_unit:
        _check_units(sources, config)
    _write_inventory(out, config, input_path, phantoms, jobs, read_failures)

    summary = BuildSummary(str(out), (i_shard, n_shard), n_slices=len(jobs))
    summary.failures.extend({**f.to_dict(), "slice_id": None, "resolution_um": None} for f in read_failures)
    for f in read_failures:
        logger.warning("skipped unreadable file %s: %s", f.path, f.reason)
    mine = jobs[i_shard::n_shard]
    summary.n_shard_slices = len(mine)

    per_res, to_mu = _per_unit(out, config)
    _run_shard(mine, per_res, sources, config, to_mu, summary, progress)

    _write_json(
        out / "runs" / f"shard-{i_shard}-of-{n_shard}.json",
        {**summary.to_dict(), "config": config.to_dict(), "provenance": provenance()},
    )
    write_index(out)
    return summary


def _check_request(input_path, phantoms) -> None:
    """Refuse both or neither of ``input_path`` and ``phantoms``, and a ``phantoms`` that is not a positive int."""
    if (input_path is None) == (phantoms is None):
        raise ValueError("build_dataset: give exactly one of `input_path` and `phantoms`.")
    if phantoms is not None and (isinstance(phantoms, bool) or not isinstance(phantoms, int) or phantoms < 1):
        raise ValueError(f"build_dataset: `phantoms` must be a positive integer, got {phantoms!r}.")


def _write_inventory(out: Path, config: DatasetConfig, input_path, phantoms, jobs: list[_Job], read_failures) -> None:
    """Split the slices and write ``OUT/inventory.json`` (the same for every shard; resolutions accumulate)."""
    splits, split_by = _splits_for(jobs, config.split, config.seed)
    old = _read_json(out / "inventory.json") or {}
    all_res = sorted(set(config.resolutions) | set(old.get("config", {}).get("resolutions", [])))
    inventory = {
        "format": FORMAT,
        "input": {"path": None if input_path is None else os.path.abspath(input_path), "phantoms": phantoms},
        "config": {**config.to_dict(), "resolutions": all_res},
        "split_by": split_by,
        "slices": [{**dataclasses.asdict(j), "split": splits[j.slice_id]} for j in jobs],
        "failures": [f.to_dict() for f in read_failures],
    }
    _write_json(out / "inventory.json", inventory)


def _per_unit(out: Path, config: DatasetConfig) -> tuple[dict, HUToMu]:
    """Per output unit (preset resolution, or the profile): folder, geometry, doses, fingerprint, resampler
    and simulator; and the HU → μ transform at the build's energy."""
    per_res = {}
    for r in config.resolutions:
        g = config.geometry(r)
        per_res[r] = {
            "dir": out / resolution_dirname(r),
            "geometry": g,
            "doses": config.doses(r),
            "fingerprint": config.fingerprint(r),
            "resample": ResampleToResolution(g.pixel_size_mm, g.n_pixels, config.mode, config.interp_mode, pad_value=0.0),
            "sim": LowDoseSimulator(g, config.backend, config.forward_model, config.filter, config.electronic_noise_std),
        }
    energy_kev = config.energy_kev
    if config.profile is not None:  # one unit; geometry and simulator per slice grid (_ProfileSimulators)
        prof = config.scanner_profile()
        energy_kev = prof.energy_kev
        per_res[prof.name] = {
            "dir": out / resolution_dirname(prof.name),
            "geometry": None,
            "doses": config.doses(prof.name),
            "fingerprint": config.fingerprint(prof.name),
            "resample": None,
            "sim": _ProfileSimulators(config),
        }
    return per_res, HUToMu(energy_kev)


def _run_shard(mine: list[_Job], per_res: dict, sources, config: DatasetConfig, to_mu, summary: BuildSummary, progress) -> None:
    """Simulate this shard's slices at every unit not already done, with a progress bar."""
    from tqdm.auto import tqdm

    i_shard, n_shard = summary.shard
    bar = tqdm(mine, desc=f"ldct_sim shard {i_shard}/{n_shard}", unit="slice", disable=None if progress is None else not progress)
    for job in bar:
        todo = [r for r, p in per_res.items()
                if not _is_done(p["dir"], job.slice_id, p["fingerprint"], p["geometry"].n_pixels if p["geometry"] else None)]
        summary.skipped += len(per_res) - len(todo)
        if todo:
            _run_job(job, todo, per_res, sources, config, to_mu, summary)
        bar.set_postfix(written=summary.written, skipped=summary.skipped, failed=len(summary.failures))
    bar.close()


def _run_job(job: _Job, todo, per_res, sources, config: DatasetConfig, to_mu, summary: BuildSummary) -> None:
    try:
        hu, spacing = _load_slice(job, sources, config)
    except CTReadError as err:
        logger.warning("skipped %s: %s", job.slice_id, err.reason)
        summary.failures.append({"path": err.path, "slice_id": job.slice_id, "resolution_um": None, "reason": err.reason})
        return
    image = MetaTensor(torch.from_numpy(np.ascontiguousarray(hu))[None], affine=torch.as_tensor(slice_affine(spacing, hu.shape)))
    if config.input_unit == "mu" and job.phantom_seed is None and sources[job.source_id].kind == "nifti":
        mu = image.clamp_min(0.0)  # already μ in cm⁻¹; negatives (noise in air) raised to 0, as HUToMu raises HU to -1000
    else:
        mu = to_mu(image)
    for r in todo:
        p = per_res[r]
        try:
            _simulate_one(job, r, p, mu, spacing, hu.shape, config)
            summary.written += 1
        except Exception as err:  # noqa: BLE001 - one bad slice must not stop a long build; it is reported
            reason = f"{type(err).__name__}: {err}"
            logger.warning("failed %s at %s: %s", job.slice_id, _unit_label(r), reason, exc_info=logger.isEnabledFor(logging.DEBUG))
            summary.failures.append({"path": job.path or "phantom", "slice_id": job.slice_id, "resolution_um": r, "reason": reason})


class _ProfileSimulators:
    """A scanner profile's simulators, one per slice grid (pixel size, side), made on first use."""

    def __init__(self, config: DatasetConfig):
        self.config = config
        self.profile = config.scanner_profile()
        self._cache: dict[tuple[float, int], LowDoseSimulator] = {}

    def grid(self, spacing_mm, shape) -> tuple[float, int]:
        """The slice's own grid: its (finer) pixel size, and the side of the square covering it."""
        px = float(min(spacing_mm))
        side = max(int(round(n * float(s) / px)) for n, s in zip(shape[-2:], spacing_mm))
        return px, side

    def __call__(self, pixel_size_mm: float, n_pixels: int) -> LowDoseSimulator:
        key = (round(pixel_size_mm, 9), n_pixels)
        if key not in self._cache:
            c = self.config
            self._cache[key] = LowDoseSimulator(
                c.geometry(self.profile.name, pixel_size_mm, n_pixels), c.backend, c.forward_model,
                self.profile.kernel, self.profile.electronic_noise_std,
            )
        return self._cache[key]


def _simulate_one(job: _Job, res_um: float | str, p: dict, mu, spacing, shape, config: DatasetConfig) -> None:
    input_i0, label_i0 = p["doses"]
    unit = _unit_label(res_um)
    if config.input_i0_range is not None:
        lo, hi = config.input_i0_range
        dose_rng = np.random.default_rng(derive_seed(config.seed, job.slice_id, unit, "dose"))
        input_i0 = float(math.exp(dose_rng.uniform(math.log(lo), math.log(hi))))
    seed = derive_seed(config.seed, job.slice_id, unit, "noise")
    if p["resample"] is None:  # a profile: the slice keeps its own grid (padded with air to a square)
        px, side = p["sim"].grid(spacing, shape)
        sim = p["sim"](px, side)
        mu_r = ResampleToResolution(px, side, "physical", config.interp_mode, pad_value=0.0)(mu)
    else:
        sim = p["sim"]
        mu_r = p["resample"](mu)
    low, label, noise = simulate_low_dose_pair(sim, mu_r.as_tensor(), input_i0, label_i0, seed=seed)
    if config.noise_insertion:  # the slice itself is the label, the noise-only image is added to it
        label = mu_r.as_tensor().to(low.dtype)
        low = label + noise
    affine = mu_r.affine.numpy()
    files = _files(job.slice_id)
    label_txt = "input slice" if config.noise_insertion else "noiseless" if label_i0 is None else f"I0={label_i0:.4g}"
    for (role, key), img, what in zip(ROLES.items(), (low, label, noise), (f"I0={input_i0:.4g}", label_txt, "noise")):
        desc = f"ldct_sim {role} mu cm-1 {unit} {what}"
        _write_nifti(p["dir"] / files[key], img[0].numpy(), affine, desc)
    record = {
        "id": job.slice_id,
        "source_id": job.source_id,
        "group": job.group_id,
        "index": job.index,
        "source": job.path or "phantom",
        "phantom_seed": job.phantom_seed,
        "resolution_um": res_um,
        "pixel_size_mm": sim.geometry.pixel_size_mm,
        "seed": seed,
        "input_i0": input_i0,
        "label_i0": label_i0,
        "noiseless_label": label_i0 is None and not config.noise_insertion,
        "noise_insertion": config.noise_insertion,
        "input_spacing_mm": list(spacing),
        "input_shape": list(shape),
        "files": files,
        "fingerprint": p["fingerprint"],
    }
    _write_json(p["dir"] / "records" / f"{job.slice_id}.json", record)


