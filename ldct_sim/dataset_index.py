"""Datalists and manifest of a dataset folder (see :mod:`ldct_sim.dataset`), rewritten from what is on disk."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .dataset import FORMAT, SPLITS, DatasetConfig, _unit_label, resolution_dirname
from .dataset_files import _is_done, _read_json, _write_json
from .provenance import provenance

__all__ = ["write_index"]


def write_index(out_dir) -> dict:
    """(Re)write every resolution's ``datalist.json`` and ``manifest.json`` from what is on disk.

    Run it once after all shards of a sharded build have finished (``python -m ldct_sim datalist OUT``);
    each shard also calls it when it ends. Only complete slices (record with matching settings, all three
    images present) are listed.

    Returns:
        The manifest dict.

    Raises:
        ValueError: ``out_dir`` holds no ``inventory.json`` (not a dataset folder).
    """
    out = Path(out_dir)
    inv = _read_json(out / "inventory.json")
    if not isinstance(inv, dict) or inv.get("format") != FORMAT:
        raise ValueError(f"write_index: `out_dir` must be an ldct_sim dataset folder (with inventory.json), got {str(out_dir)!r}.")
    cfg = inv["config"]
    config = DatasetConfig(**{**cfg, "resolutions": tuple(cfg["resolutions"]), "split": tuple(cfg["split"])})
    slices = inv["slices"]
    done: set[tuple[str, float]] = set()
    seeds: dict[str, dict[str, int]] = {}
    resolutions = {}
    for r in config.units:
        entry = _index_unit(out, config, slices, r, done, seeds)
        resolutions[_unit_label(r).removesuffix("um") if config.profile is None else r] = entry
    runs = [_read_json(p) for p in sorted((out / "runs").glob("shard-*.json"))]
    runs = [r for r in runs if isinstance(r, dict)]
    failures = _open_failures(inv, runs, done, config)
    manifest = {
        "format": FORMAT,
        "input": inv["input"],
        "config": config.to_dict(),
        "units": {"image": "linear attenuation mu, cm^-1", "length": "mm", "i0": "photons per detector element per view"},
        "energy_kev": config.energy_kev if config.profile is None else config.profile["energy_kev"],
        "resolutions": resolutions,
        "split_by": inv["split_by"],
        "counts": {
            "slices": len(slices),
            "expected": len(slices) * len(config.units),
            "done": len(done),
            "failed": len(failures),
            "splits": dict(Counter(s["split"] for s in slices)),
        },
        "seeds": {
            "global": config.seed,
            "rule": "derive_seed(global, slice_id, '<res>um', 'noise'): numpy SeedSequence over sha256 words",
            "phantoms": {s["slice_id"]: s["phantom_seed"] for s in slices if s.get("phantom_seed") is not None},
            "noise": seeds,
        },
        "failures": failures,
        "runs": [{k: r.get(k) for k in ("shard", "n_shard_slices", "written", "skipped", "provenance")} for r in runs],
        "provenance": provenance(),
    }
    _write_json(out / "manifest.json", manifest)
    return manifest


def _index_unit(out: Path, config: DatasetConfig, slices: list[dict], r, done: set, seeds: dict) -> dict:
    """Write one unit's ``datalist.json`` (complete slices only) and return its manifest entry.

    Adds the unit's complete ``(slice id, unit)`` pairs to ``done`` and their noise seeds to ``seeds``.
    """
    res_dir = out / resolution_dirname(r)
    fp, n = config.fingerprint(r), (None if config.profile is not None else config.geometry(r).n_pixels)
    lists: dict[str, list] = {s: [] for s in SPLITS}
    for s in slices:
        rec = _read_json(res_dir / "records" / f"{s['slice_id']}.json")
        if not (isinstance(rec, dict) and _is_done(res_dir, s["slice_id"], fp, n, verify=False)):
            continue
        done.add((s["slice_id"], r))
        seeds.setdefault(s["slice_id"], {})[_unit_label(r).removesuffix("um")] = rec["seed"]
        lists[s["split"]].append(
            {**rec["files"], "id": s["slice_id"], "group": s["group_id"], "seed": rec["seed"], "input_i0": rec["input_i0"]}
        )
    header = _unit_header(config, r)
    if res_dir.exists() or any(lists.values()):
        _write_json(res_dir / "datalist.json", {**header, **lists})
    return {
        **header,
        "datalist": f"{resolution_dirname(r)}/datalist.json",
        "fingerprint": fp,
        "counts": {s: len(v) for s, v in lists.items()},
        "complete": sum(len(v) for v in lists.values()) == len(slices),
    }


def _unit_header(config: DatasetConfig, r) -> dict:
    """The header of one unit's datalist: name, description, doses in photons and geometry."""
    input_i0, label_i0 = config.doses(r)
    if config.input_i0_range is not None:
        input_i0 = "log-uniform in [{:g}, {:g}] per slice".format(*config.input_i0_range)
    if config.profile is not None:
        geometry = {k: config.profile[k] for k in ("sod_mm", "sdd_mm", "det_pixel_mm", "n_views")}
        if config.n_views is not None:
            geometry["n_views"] = config.n_views
        geometry["pixel_size_mm"] = "each slice's own (see its record)"
    else:
        geometry = config.geometry(r).to_dict()
    header = {
        "name": f"ldct_sim {_unit_label(r).removesuffix('um')}{'' if config.profile is not None else ' um'}",
        "description": f"Simulated LDCT pairs, mu in cm-1, image=input at I0 {input_i0}, label="
        + ("the input slice itself (noise insertion)" if config.noise_insertion
           else "noiseless" if label_i0 is None else f"I0 {label_i0:g}"),
        "resolution_um": None if config.profile is not None else r,
        "input_i0": input_i0,
        "label_i0": label_i0,
        "geometry": geometry,
    }
    if config.profile is not None:
        header["profile"] = config.profile
    return header


def _open_failures(inv: dict, runs: list[dict], done: set, config: DatasetConfig) -> list[dict]:
    """The inventory's and runs' failures, each once, less those of units since done."""
    failures, seen = [], set()
    for f in list(inv.get("failures", [])) + [f for run in runs for f in run.get("failures", [])]:
        key = (f.get("path"), f.get("slice_id"), f.get("resolution_um"))
        if key in seen or (f.get("slice_id"), f.get("resolution_um")) in done:
            continue
        if f.get("slice_id") and f.get("resolution_um") is None and all((f["slice_id"], r) in done for r in config.units):
            continue
        seen.add(key)
        failures.append(f)
    return failures
