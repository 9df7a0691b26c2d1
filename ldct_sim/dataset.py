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

This module holds the settings (:class:`DatasetConfig`), the run summary, seeds and splits; the build
runs in :mod:`ldct_sim.dataset_build`, the datalists and manifest are written by
:mod:`ldct_sim.dataset_index`, files by :mod:`ldct_sim.dataset_files`. :func:`build_dataset` and
:func:`write_index` are re-exported here, their public home.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from .fbp import FILTERS
from .geometry import PAPER_PRESETS, FanBeamGeometry, get_preset
from .io import VALUE_UNITS
from .projectors import BACKENDS, DEFAULT_BACKEND, PROJECTOR_MODELS
from .transforms.array import RESAMPLE_MODES

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
        noise_insertion: the label is the input slice itself (resampled, in cm⁻¹) and the low-dose image
            is that slice plus the simulated noise-only image ``FBP(noisy) − FBP(noiseless)``: the way
            Mayo made its quarter-dose images from the full-dose scans. For real normal-dose input, whose
            kernel blur a reconstruction would apply a second time, so that pairs differ by noise alone.
            Excludes ``label_i0`` and ``noiseless_label``. Default False.
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
    noise_insertion: bool = False
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
        if self.noise_insertion and (self.noiseless_label or self.label_i0 is not None):
            raise ValueError(f"{where}: `noise_insertion` makes the input slice itself the label; it excludes "
                             "`noiseless_label` and `label_i0`.")
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
        label = None if self.noiseless_label or self.noise_insertion else float(self.label_i0 or default_label)
        return float(self.input_i0 or default_in), label

    def settings(self) -> dict:
        """The settings shared by all resolutions (everything but ``resolutions``), as plain JSON."""
        d = dataclasses.asdict(self)
        d.pop("resolutions")
        if d["input_unit"] == "hu":  # absent rather than "hu": datasets made before the option keep their fingerprints
            d.pop("input_unit")
        if d["profile"] is None:  # absent rather than null: datasets made before profiles keep their fingerprints
            d.pop("profile")
        if not d["noise_insertion"]:  # absent rather than false: older datasets keep their fingerprints
            d.pop("noise_insertion")
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


# The build and the index import the definitions above, so they are imported last (re-exported here).
from .dataset_build import build_dataset  # noqa: E402
from .dataset_index import write_index  # noqa: E402
