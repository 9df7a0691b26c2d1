"""Dataset builder: NDCT slices → per-resolution low-dose/label/noise NIfTI files, datalists and a manifest.

For every slice (read from DICOM/NIfTI by :mod:`ldct_sim.io`, or a procedural phantom) and every
resolution (a :data:`~ldct_sim.geometry.PAPER_PRESETS` system) the builder runs
``HU → μ → ResampleToResolution → project once → input (input I0), label (label I0 or noiseless),
noise-only (input − noiseless)`` and writes float32 NIfTI images in cm⁻¹ whose affine carries the pixel
size. Layout of the output folder ``OUT``::

    OUT/manifest.json                 geometry, doses, seeds, provenance, counts, failures
    OUT/inventory.json                the slices found, their groups and splits (same for every shard)
    OUT/runs/shard-<i>-of-<n>.json    what each run of each shard did, with its provenance
    OUT/res<R>um/datalist.json        MONAI datalist {"training": [...], "validation": [...], "test": [...]}
    OUT/res<R>um/{input,label,noise}/<slice id>.nii.gz
    OUT/res<R>um/records/<slice id>.json   per-slice record: seed, doses, source; written last

Datalist entries are ``{"image": "input/<id>.nii.gz", "label": ..., "noise": ..., "id", "group", "seed"}``
with paths relative to the datalist (``monai.data.load_decathlon_datalist`` resolves them).

Guarantees:

* **Atomic and resumable.** Each file is written under a temporary name and renamed into place; a slice
  counts as done only when its record exists, was made with the same settings and all three images load.
  A re-run skips done slices and recomputes partial ones (seeds are fixed, so outputs are identical).
* **Reproducible.** The noise seed of a slice at a resolution is derived from (global seed, slice id,
  resolution) with :class:`numpy.random.SeedSequence` and recorded, as are phantom seeds, the geometry,
  the doses and :func:`ldct_sim.provenance.provenance`.
* **Splits by patient.** Slices are split by ``group_id`` (DICOM ``PatientID``, one NIfTI file, one
  phantom): a patient never spans two splits. With a single group the split is by volume, and with a
  single volume by slice (the manifest's ``split_by`` says which). Default proportions 80/10/10, the
  study's 2400:300:300.
* **Sharding.** ``shard=(i, n)`` processes every n-th slice of the (deterministic) inventory, so n
  processes or machines writing into one shared ``OUT`` cover every slice exactly once. Each shard
  rewrites the datalists and manifest from what is on disk when it finishes; after all shards are done,
  ``python -m ldct_sim datalist OUT`` (:func:`write_index`) writes the final, complete ones.
* **Robust to bad input.** An unreadable or corrupt file (or slice) is logged, skipped and listed in the
  summary and manifest; nothing already written is lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from .fbp import FILTERS
from .geometry import PAPER_PRESETS, FanBeamGeometry, get_preset
from .io import (
    VALUE_UNITS,
    CTReadError,
    CTSource,
    ReadFailure,
    check_nifti_unit,
    check_output_folder,
    find_ct,
    slice_affine,
    slice_id,
)
from .phantoms import abdominal_phantom
from .projectors import BACKENDS, DEFAULT_BACKEND, PROJECTOR_MODELS
from .provenance import provenance
from .simulate import LowDoseSimulator
from .transforms.array import RESAMPLE_MODES, HUToMu, ResampleToResolution, simulate_low_dose_pair

__all__ = [
    "DatasetConfig",
    "BuildSummary",
    "build_dataset",
    "write_index",
    "assign_splits",
    "derive_seed",
    "parse_shard",
    "resolution_dirname",
    "DEFAULT_SPLIT",
    "PHANTOM_FOV_MM",
    "SPLITS",
]

logger = logging.getLogger(__name__)

FORMAT = "ldct_sim-dataset/1"
SPLITS = ("training", "validation", "test")
#: Proportions of the resolution-transfer study (2400:300:300).
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
#: Field of view given to procedural phantoms (their body spans about 85% of it), in mm.
PHANTOM_FOV_MM = 360.0
#: Output image folders and the datalist keys they go under.
ROLES = {"input": "image", "label": "label", "noise": "noise"}


def derive_seed(seed: int, *keys) -> int:
    """A 32-bit seed derived from ``seed`` and any number of string/number keys (SeedSequence-mixed).

    The same inputs give the same seed on every machine; different keys give independent streams.
    """
    words = [int(seed)] + [int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:8], "little") for k in keys]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0])


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 <= i < n) into ``(i, n)``.

    Raises:
        ValueError: anything else.
    """
    try:
        i, n = (int(p) for p in str(text).split("/"))
    except ValueError:
        i, n = -1, 0
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"`shard` must be 'i/n' with 0 <= i < n, got {text!r}.")
    return i, n


def resolution_dirname(res_um: float | str) -> str:
    """Folder of one resolution: ``res62.5um``, ``res625um``; of a scanner profile: its name."""
    if isinstance(res_um, str):
        return res_um
    return f"res{float(res_um):g}um"


def _unit_label(unit: float | str) -> str:
    """How a unit (a preset resolution in µm, or a profile's name) appears in seeds, records and logs."""
    return unit if isinstance(unit, str) else f"{unit:g}um"


@dataclass(frozen=True)
class DatasetConfig:
    """Settings of a dataset build; all but ``resolutions`` must match to add to an existing folder.

    Args:
        resolutions: preset resolutions in µm (keys of :data:`PAPER_PRESETS`). Default all six.
        seed: global seed (noise, phantoms, splits). Default 0.
        split: training/validation/test proportions (normalised). Default (0.8, 0.1, 0.1).
        mode: ``"rescale"`` (default, the study's) or ``"physical"``; see ``ResampleToResolution``.
        n_pixels: image side in pixels; ``None`` keeps the preset's 512.
        n_views: views over 360°; ``None`` keeps the geometry default.
        input_i0: input dose (photons) for every resolution; ``None`` uses each preset's.
        input_i0_range: ``(low, high)`` photons: draw each slice's input dose log-uniformly in this
            range (seeded per slice and resolution, recorded in its record and datalist entry), so a
            denoiser learns a range of noise levels rather than one. Excludes ``input_i0``.
        label_i0: label dose (photons); ``None`` uses each preset's.
        noiseless_label: labels are noiseless reconstructions instead. Default False.
        backend, forward_model, filter, electronic_noise_std: simulation settings (see ``LowDoseSimulator``).
        energy_kev: energy for HU → μ in keV. Default 60.
        phantom_size: side of procedural phantoms in pixels, before resampling. Default 512.
        input_unit: unit of NIfTI inputs: ``"hu"`` (default) or ``"mu"``, linear attenuation in cm⁻¹ at
            the simulated energy (used as is, negative values raised to 0). DICOM is always HU.
            :func:`build_dataset` refuses NIfTI files whose values do not look like this unit.
        interp_mode: resampling interpolation. Default ``"bilinear"``.
        profile: a :class:`~ldct_sim.profile.ScannerProfile` (or its file, shipped name or dict) to simulate
            with instead of the presets: every slice keeps its own pixel size and size (non-square
            slices are padded with air to a square), the FBP kernel, energy and electronic noise are the
            profile's, the input dose defaults to its ``i0`` and the label dose to its ``full_dose_i0``.
            ``resolutions``, ``mode``, ``n_pixels``, ``filter``, ``energy_kev`` and
            ``electronic_noise_std`` are then not used (``resolutions`` must be empty or left at its
            default); outputs go to ``OUT/<profile name>/``. Stored as the profile's dict without its
            fit record.

    Raises:
        ValueError: unknown preset, mode, backend, model or filter; bad doses or split; a bad profile.
    """

    resolutions: tuple[float, ...] = tuple(PAPER_PRESETS)
    seed: int = 0
    split: tuple[float, float, float] = DEFAULT_SPLIT
    mode: str = "rescale"
    n_pixels: int | None = None
    n_views: int | None = None
    input_i0: float | None = None
    input_i0_range: tuple[float, float] | None = None
    label_i0: float | None = None
    noiseless_label: bool = False
    backend: str = DEFAULT_BACKEND
    forward_model: str = "strip"
    filter: str = "ram-lak"
    electronic_noise_std: float = 0.0
    energy_kev: float = 60.0
    phantom_size: int = 512
    input_unit: str = "hu"
    interp_mode: str = "bilinear"
    profile: dict | None = None

    def __post_init__(self):
        where = "DatasetConfig"
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass setter
        if self.profile is not None:
            from .profile import load_profile

            try:
                d = load_profile(self.profile).to_dict()
            except (FileNotFoundError, TypeError, ValueError) as err:
                raise ValueError(f"{where}: `profile`: {err}") from err
            for key in ("fit", "provenance", "full_dose_i0"):
                d.pop(key, None)
            set_("profile", d)
            if tuple(self.resolutions) not in ((), tuple(PAPER_PRESETS)):
                raise ValueError(f"{where}: give `resolutions` or `profile`, not both (a profile keeps each slice's own grid).")
            set_("resolutions", ())
        elif not self.resolutions:
            raise ValueError(f"{where}: `resolutions` must name at least one preset, got {self.resolutions!r}.")
        else:
            set_("resolutions", tuple(sorted({get_preset(r).resolution_um for r in self.resolutions})))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"{where}: `seed` must be a non-negative integer, got {self.seed!r}.")
        split = tuple(float(s) for s in self.split)
        if len(split) != 3 or any(not math.isfinite(s) or s < 0 for s in split) or sum(split) <= 0:
            raise ValueError(f"{where}: `split` must be three non-negative proportions, got {self.split!r}.")
        # Normalise once: re-normalising an already normalised split can change its last bit, and a
        # config re-read from the manifest must equal the one that wrote it (its fingerprint is compared).
        total = sum(split)
        set_("split", split if abs(total - 1.0) < 1e-9 else tuple(s / total for s in split))
        for name, allowed in (("mode", RESAMPLE_MODES), ("backend", BACKENDS), ("forward_model", PROJECTOR_MODELS), ("filter", FILTERS), ("input_unit", VALUE_UNITS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{where}: `{name}` must be one of {allowed}, got {getattr(self, name)!r}.")
        for name in ("input_i0", "label_i0"):
            v = getattr(self, name)
            if v is not None and (not math.isfinite(float(v)) or float(v) <= 0):
                raise ValueError(f"{where}: `{name}` must be a positive number of photons, got {v!r}.")
        if self.input_i0_range is not None:
            rng_ = tuple(float(v) for v in self.input_i0_range)
            if len(rng_) != 2 or not all(math.isfinite(v) and v > 0 for v in rng_) or rng_[0] > rng_[1]:
                raise ValueError(
                    f"{where}: `input_i0_range` must be (low, high) photons with 0 < low <= high, got {self.input_i0_range!r}."
                )
            if self.input_i0 is not None:
                raise ValueError(f"{where}: give either `input_i0` or `input_i0_range`, not both.")
            set_("input_i0_range", rng_)
        for name in ("n_pixels", "n_views", "phantom_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"{where}: `{name}` must be a positive integer, got {v!r}.")
        if self.profile is not None and self.n_pixels is not None:
            raise ValueError(f"{where}: `n_pixels` is not used with a `profile`: each slice keeps its own size.")
        for r in self.resolutions:
            self.geometry(r)  # geometry errors surface before any work

    @property
    def units(self) -> tuple:
        """What outputs are made for: the preset resolutions in µm, or the profile's name."""
        return (self.profile["name"],) if self.profile is not None else self.resolutions

    def scanner_profile(self):
        """The :class:`~ldct_sim.profile.ScannerProfile` (``None`` without one)."""
        from .profile import ScannerProfile

        return None if self.profile is None else ScannerProfile.from_dict(self.profile)

    def geometry(self, res_um: float | str, spacing_mm: float | None = None, n_pixels: int | None = None) -> FanBeamGeometry:
        """The preset geometry at ``res_um`` with the ``n_pixels``/``n_views`` overrides; with a profile
        (``res_um`` its name), the profile's geometry for a slice of ``spacing_mm`` pixels and side ``n_pixels``."""
        if self.profile is not None:
            changes = {} if self.n_views is None else {"n_views": self.n_views}
            return self.scanner_profile().geometry(spacing_mm, n_pixels, **changes)
        changes = {k: v for k, v in (("n_pixels", self.n_pixels), ("n_views", self.n_views)) if v is not None}
        return get_preset(res_um).geometry(**changes)

    def doses(self, res_um: float | str) -> tuple[float, float | None]:
        """``(input I0, label I0)`` in photons at ``res_um`` (or for the profile); the label's is ``None`` when noiseless."""
        if self.profile is not None:
            prof = self.scanner_profile()
            default_in, default_label = prof.i0, prof.full_dose_i0
        else:
            p = get_preset(res_um)
            default_in, default_label = p.input_i0, p.label_i0
        label = None if self.noiseless_label else float(self.label_i0 or default_label)
        return float(self.input_i0 or default_in), label

    def settings(self) -> dict:
        """The settings shared by all resolutions (everything but ``resolutions``), as plain JSON."""
        d = dataclasses.asdict(self)
        d.pop("resolutions")
        if d["input_unit"] == "hu":  # absent rather than "hu": datasets made before the option keep their fingerprints
            d.pop("input_unit")
        if d["profile"] is None:  # absent rather than null: datasets made before profiles keep their fingerprints
            d.pop("profile")
        d["split"] = list(d["split"])
        if d["input_i0_range"] is not None:
            d["input_i0_range"] = list(d["input_i0_range"])
        return d

    def to_dict(self) -> dict:
        return {"resolutions": list(self.resolutions), **self.settings()}

    def fingerprint(self, res_um: float | str) -> str:
        """Hash of everything that determines the outputs at ``res_um`` (or the profile); stored in every record."""
        unit = {"profile_unit": res_um} if isinstance(res_um, str) else {"resolution_um": float(res_um)}
        blob = json.dumps({**self.settings(), **unit}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Job:
    slice_id: str
    source_id: str
    group_id: str
    index: int
    path: str | None
    phantom_seed: int | None = None


@dataclass
class BuildSummary:
    """What one run did. Units are (slice, resolution) pairs.

    Attributes:
        out_dir: the dataset folder.
        shard: ``(i, n)``.
        n_slices: slices in the whole inventory; ``n_shard_slices`` in this shard.
        written, skipped: units simulated now, and units already done.
        failures: dicts with ``path``, ``slice_id`` (None for whole files), ``resolution_um`` and ``reason``.
    """

    out_dir: str
    shard: tuple[int, int]
    n_slices: int = 0
    n_shard_slices: int = 0
    written: int = 0
    skipped: int = 0
    failures: list[dict] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        """Something is usable: a unit was written or already done."""
        return self.written + self.skipped > 0

    @property
    def exit_code(self) -> int:
        """0 unless nothing succeeded while something failed."""
        return 0 if self.succeeded or not self.failures else 1

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "shard": list(self.shard)}

    def report(self) -> str:
        """A human-readable summary (what the CLI prints)."""
        i, n = self.shard
        lines = [
            f"ldct_sim simulate{f' (shard {i}/{n})' if n > 1 else ''}: {self.n_shard_slices} of {self.n_slices} slices; "
            f"{self.written} slice-resolutions written, {self.skipped} already done, {len(self.failures)} failed.",
            f"Output: {self.out_dir}",
        ]
        for f in self.failures[:20]:
            what = f["path"] if f.get("slice_id") is None else f"{f['slice_id']} ({f['path']})"
            res = f" at {f['resolution_um']:g} um" if f.get("resolution_um") is not None else ""
            lines.append(f"  skipped {what}{res}: {f['reason']}")
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more (see manifest.json)")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# inventory and splits
# ---------------------------------------------------------------------------------------------------
def assign_splits(units: dict[str, int], fractions=DEFAULT_SPLIT, seed: int = 0) -> dict[str, str]:
    """Assign whole units (patients, volumes or slices) to ``SPLITS`` in proportion to their slice counts.

    Units are shuffled with ``seed``, then each goes to the split furthest below its target, relative to
    the target (so small splits get a unit early). With 3 or more units every split with a positive
    proportion gets at least one.

    Args:
        units: unit id -> number of slices.
        fractions: proportions of training, validation and test.
        seed: shuffling seed.

    Returns:
        unit id -> split name.
    """
    total = sum(units.values())
    frac = np.asarray(fractions, dtype=float) / float(sum(fractions))
    target = frac * total
    count = np.zeros(3)
    order = sorted(units)
    np.random.default_rng(derive_seed(seed, "splits")).shuffle(order)
    out = {}
    for u in order:
        deficit = np.where(target > 0, (target - count) / np.where(target > 0, target, 1.0), -np.inf)
        k = int(np.argmax(deficit))
        out[u] = SPLITS[k]
        count[k] += units[u]
    return out


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
# files
# ---------------------------------------------------------------------------------------------------
def _tmp_tag() -> str:
    """A temporary-name suffix unique across processes and machines sharing a folder."""
    return f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{_tmp_tag()}")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_nifti(path: Path, image: np.ndarray, affine: np.ndarray, descrip: str) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.ascontiguousarray(image, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = descrip.encode()[:79]
    tmp = path.with_name(f".{path.name[: -len('.nii.gz')]}.{_tmp_tag()}.nii.gz")
    nib.save(img, tmp)
    os.replace(tmp, path)


def _loads(path: Path, n: int | None) -> bool:
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(path).dataobj)
    except Exception:  # noqa: BLE001 - a truncated or corrupt file raises anything; it is recomputed
        return False
    square = data.shape[0] == data.shape[1] if n is None else data.shape[:2] == (n, n)  # None: the slice's own side
    return square and bool(np.isfinite(data).all())


def _files(job_id: str) -> dict[str, str]:
    return {key: f"{role}/{job_id}.nii.gz" for role, key in ROLES.items()}


def _is_done(res_dir: Path, sid: str, fingerprint: str, n: int | None, *, verify: bool = True) -> bool:
    rec = _read_json(res_dir / "records" / f"{sid}.json")
    if not isinstance(rec, dict) or rec.get("fingerprint") != fingerprint:
        return False
    for rel in _files(sid).values():
        p = res_dir / rel
        if not (p.is_file() and (not verify or _loads(p, n))):
            return False
    return True


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
    """Simulate a dataset into ``out_dir`` (see the module docstring for the layout and guarantees).

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
    from tqdm.auto import tqdm

    config = config or DatasetConfig()
    if (input_path is None) == (phantoms is None):
        raise ValueError("build_dataset: give exactly one of `input_path` and `phantoms`.")
    if phantoms is not None and (isinstance(phantoms, bool) or not isinstance(phantoms, int) or phantoms < 1):
        raise ValueError(f"build_dataset: `phantoms` must be a positive integer, got {phantoms!r}.")
    i_shard, n_shard = parse_shard(f"{shard[0]}/{shard[1]}")
    out = Path(out_dir)
    _check_out_dir(out)
    _check_existing(out, config)
    jobs, sources, read_failures = _inventory(input_path, phantoms, config)
    if not jobs and not read_failures:
        raise ValueError(f"build_dataset: no DICOM or NIfTI CT found at {str(input_path)!r}.")
    if check_unit:
        _check_units(sources, config)
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

    summary = BuildSummary(str(out), (i_shard, n_shard), n_slices=len(jobs))
    summary.failures.extend({**f.to_dict(), "slice_id": None, "resolution_um": None} for f in read_failures)
    for f in read_failures:
        logger.warning("skipped unreadable file %s: %s", f.path, f.reason)
    mine = jobs[i_shard::n_shard]
    summary.n_shard_slices = len(mine)

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
    to_mu = HUToMu(energy_kev)

    bar = tqdm(mine, desc=f"ldct_sim shard {i_shard}/{n_shard}", unit="slice", disable=None if progress is None else not progress)
    for job in bar:
        todo = [r for r, p in per_res.items()
                if not _is_done(p["dir"], job.slice_id, p["fingerprint"], p["geometry"].n_pixels if p["geometry"] else None)]
        summary.skipped += len(per_res) - len(todo)
        if todo:
            _run_job(job, todo, per_res, sources, config, to_mu, summary)
        bar.set_postfix(written=summary.written, skipped=summary.skipped, failed=len(summary.failures))
    bar.close()

    _write_json(
        out / "runs" / f"shard-{i_shard}-of-{n_shard}.json",
        {**summary.to_dict(), "config": config.to_dict(), "provenance": provenance()},
    )
    write_index(out)
    return summary


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
    affine = mu_r.affine.numpy()
    files = _files(job.slice_id)
    label_txt = "noiseless" if label_i0 is None else f"I0={label_i0:.4g}"
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
        "noiseless_label": label_i0 is None,
        "input_spacing_mm": list(spacing),
        "input_shape": list(shape),
        "files": files,
        "fingerprint": p["fingerprint"],
    }
    _write_json(p["dir"] / "records" / f"{job.slice_id}.json", record)


# ---------------------------------------------------------------------------------------------------
# datalists and manifest
# ---------------------------------------------------------------------------------------------------
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
            + ("noiseless" if label_i0 is None else f"I0 {label_i0:g}"),
            "resolution_um": None if config.profile is not None else r,
            "input_i0": input_i0,
            "label_i0": label_i0,
            "geometry": geometry,
        }
        if config.profile is not None:
            header["profile"] = config.profile
        if res_dir.exists() or any(lists.values()):
            _write_json(res_dir / "datalist.json", {**header, **lists})
        resolutions[_unit_label(r).removesuffix("um") if config.profile is None else r] = {
            **header,
            "datalist": f"{resolution_dirname(r)}/datalist.json",
            "fingerprint": fp,
            "counts": {s: len(v) for s, v in lists.items()},
            "complete": sum(len(v) for v in lists.values()) == len(slices),
        }
    runs = [_read_json(p) for p in sorted((out / "runs").glob("shard-*.json"))]
    runs = [r for r in runs if isinstance(r, dict)]
    failures, seen = [], set()
    for f in list(inv.get("failures", [])) + [f for run in runs for f in run.get("failures", [])]:
        key = (f.get("path"), f.get("slice_id"), f.get("resolution_um"))
        if key in seen or (f.get("slice_id"), f.get("resolution_um")) in done:
            continue
        if f.get("slice_id") and f.get("resolution_um") is None and all((f["slice_id"], r) in done for r in config.units):
            continue
        seen.add(key)
        failures.append(f)
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
