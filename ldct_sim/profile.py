"""Scanner profiles: a clinical scanner's geometry, reconstruction kernel and doses, as one value.

A :class:`ScannerProfile` is what ``python -m ldct_sim calibrate`` fits to a user's real low-dose /
full-dose pairs, and what ``python -m ldct_sim simulate --profile`` and the MONAI transforms simulate
with. It fixes the hardware (distances, detector pitch, views), the FBP kernel (an
:class:`~ldct_sim.fbp.ApodizedRamp`), the doses (low-dose ``i0`` and the full-dose one,
``dose_ratio × i0``) and the energy for HU → μ; the image grid comes from each input: a slice keeps
its own pixel size and size (``profile.geometry(pixel_size_mm, n_pixels)``).

Units: mm, cycles/mm, photons per detector element per view, keV.

Shipped profiles (numbers only, fitted to the 15 public AAPM–Mayo quarter/full-dose pairs) are in
``ldct_sim/profiles/`` and load by name: ``load_profile("definition_as_b30f")``.

Example:
    >>> from ldct_sim.profile import ScannerProfile
    >>> p = ScannerProfile.from_preset("definition_as", kernel="hann", i0=2e5)
    >>> g = p.geometry(pixel_size_mm=0.7, n_pixels=512)
    >>> (g.sod_mm, g.n_views, p.full_dose_i0)
    (595.0, 1152, 800000.0)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .fbp import ApodizedRamp, check_filter, filter_from_json, filter_to_json
from .geometry import FanBeamGeometry, _positive, get_clinical_preset
from .projectors import BACKENDS, PROJECTOR_MODELS

__all__ = ["ScannerProfile", "load_profile", "shipped_profiles", "PROFILE_FORMAT", "PROFILES_DIR"]

PROFILE_FORMAT = "ldct_sim-profile/1"
#: Folder of the profiles that ship with the package.
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"


def _pos(name: str, value) -> float:
    """``value`` as a positive finite float, or an error naming ``ScannerProfile.<name>``."""
    return _positive("ScannerProfile", name, value)


@dataclass(frozen=True, kw_only=True)
class ScannerProfile:
    """A clinical scanner for simulation: geometry without the image grid, kernel, doses, energy.

    Args:
        name: a short name (``"definition_as_b30f"``).
        sod_mm, sdd_mm: source-to-isocentre and source-to-detector distances, mm.
        det_pixel_mm: flat-detector pitch at the detector, mm.
        n_views: views per 360° rotation.
        kernel: FBP filter: an :class:`~ldct_sim.fbp.ApodizedRamp`, its dict, or a name in
            :data:`~ldct_sim.fbp.FILTERS`.
        i0: low-dose incident photons per detector element per view (the calibrated quarter dose).
        dose_ratio: full-dose I0 over ``i0`` (4 for quarter dose). Default 4.
        energy_kev: effective energy for HU → μ, keV. Default 60.
        electronic_noise_std: Gaussian electronic noise in photons. Default 0.
        forward_model: ``"strip"`` (default, no inverse crime) or ``"line"``, for simulating.
        backend: projector backend for simulating. Default ``"astra"``.
        preset: the clinical preset it was built on (``"definition_as"``), or None.
        kvp: tube voltage, kV (documentation only).
        description: free text (what it was fitted to).
        fit: the calibration's record (targets, residuals, radial NPS, settings); plain JSON.
        provenance: :func:`ldct_sim.provenance.provenance` of the calibration; plain JSON.

    Raises:
        ValueError: non-positive numbers, an unknown kernel, model or backend.
    """

    name: str
    sod_mm: float
    sdd_mm: float
    det_pixel_mm: float
    n_views: int
    kernel: ApodizedRamp | str
    i0: float
    dose_ratio: float = 4.0
    energy_kev: float = 60.0
    electronic_noise_std: float = 0.0
    forward_model: str = "strip"
    backend: str = "astra"
    preset: str | None = None
    kvp: float | None = None
    description: str = ""
    fit: dict = field(default_factory=dict, compare=False, repr=False)
    provenance: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass setter
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"ScannerProfile: `name` must be a non-empty string, got {self.name!r}.")
        for k in ("sod_mm", "sdd_mm", "det_pixel_mm", "i0", "dose_ratio", "energy_kev"):
            set_(k, _pos(k, getattr(self, k)))
        if self.sdd_mm <= self.sod_mm:
            raise ValueError(f"ScannerProfile: `sdd_mm` ({self.sdd_mm}) must exceed `sod_mm` ({self.sod_mm}).")
        if isinstance(self.n_views, bool) or not isinstance(self.n_views, int) or self.n_views < 1:
            raise ValueError(f"ScannerProfile: `n_views` must be a positive integer, got {self.n_views!r}.")
        set_("kernel", check_filter(self.kernel))
        e = float(self.electronic_noise_std)
        if not math.isfinite(e) or e < 0:
            raise ValueError(f"ScannerProfile: `electronic_noise_std` must be >= 0 photons, got {self.electronic_noise_std!r}.")
        set_("electronic_noise_std", e)
        if self.forward_model not in PROJECTOR_MODELS:
            raise ValueError(f"ScannerProfile: `forward_model` must be one of {PROJECTOR_MODELS}, got {self.forward_model!r}.")
        if self.backend not in BACKENDS:
            raise ValueError(f"ScannerProfile: `backend` must be one of {BACKENDS}, got {self.backend!r}.")
        if self.kvp is not None:
            set_("kvp", _pos("kvp", self.kvp))

    # ---- doses and geometry ---------------------------------------------------------------------
    @property
    def full_dose_i0(self) -> float:
        """Full-dose incident photons per detector element per view: ``dose_ratio × i0``."""
        return self.i0 * self.dose_ratio

    def i0_at(self, dose_fraction: float) -> float:
        """Photons at a fraction of the full dose: ``dose_fraction × full_dose_i0`` (0.25 gives quarter dose
        when ``dose_ratio`` is 4)."""
        return _pos("dose_fraction", dose_fraction) * self.full_dose_i0

    def geometry(self, pixel_size_mm: float, n_pixels: int = 512, **changes) -> FanBeamGeometry:
        """The fan-beam geometry for an ``n_pixels²`` image of ``pixel_size_mm`` pixels (the input's own grid)."""
        fields = dict(pixel_size_mm=pixel_size_mm, n_pixels=n_pixels, sod_mm=self.sod_mm, sdd_mm=self.sdd_mm,
                      det_pixel_mm=self.det_pixel_mm, n_views=self.n_views)
        fields.update(changes)
        return FanBeamGeometry(**fields)

    def simulator(self, pixel_size_mm: float, n_pixels: int = 512, *, backend: str | None = None,
                  forward_model: str | None = None, device=None):
        """A :class:`~ldct_sim.simulate.LowDoseSimulator` for one image grid with this profile's kernel and noise."""
        from .simulate import LowDoseSimulator

        return LowDoseSimulator(
            self.geometry(pixel_size_mm, n_pixels), backend=backend or self.backend,
            forward_model=forward_model or self.forward_model, filter=self.kernel,
            electronic_noise_std=self.electronic_noise_std, device=device,
        )

    # ---- construction and value semantics ---------------------------------------------------------
    @classmethod
    def from_preset(cls, preset: str, *, kernel, i0: float, name: str | None = None, **changes) -> ScannerProfile:
        """A profile on a :data:`~ldct_sim.geometry.CLINICAL_PRESETS` system with a given kernel and dose."""
        p = get_clinical_preset(preset)
        fields = dict(name=name or f"{p.name}", sod_mm=p.sod_mm, sdd_mm=p.sdd_mm, det_pixel_mm=p.det_pixel_mm,
                      n_views=p.n_views, kernel=kernel, i0=i0, energy_kev=p.energy_kev, preset=p.name, kvp=p.kvp,
                      description=p.description)
        fields.update(changes)
        return cls(**fields)

    def replace(self, **changes) -> ScannerProfile:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON, with ``format`` and the derived ``full_dose_i0`` for readers."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["kernel"] = filter_to_json(self.kernel)
        return {"format": PROFILE_FORMAT, **d, "full_dose_i0": self.full_dose_i0}

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "ScannerProfile.from_dict") -> ScannerProfile:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: another format, missing or unknown keys, bad values.
        """
        if not isinstance(d, dict):
            raise ValueError(f"{where}: a profile must be a JSON object, got {type(d).__name__}.")
        fmt = d.get("format", PROFILE_FORMAT)
        if fmt != PROFILE_FORMAT:
            raise ValueError(f"{where}: unknown profile format {fmt!r}; expected {PROFILE_FORMAT!r}.")
        names = {f.name for f in dataclasses.fields(cls)}
        body = {k: v for k, v in d.items() if k not in ("format", "full_dose_i0")}
        unknown = sorted(set(body) - names)
        if unknown:
            raise ValueError(f"{where}: unknown profile keys {unknown}.")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                         and f.name not in body)
        if missing:
            raise ValueError(f"{where}: the profile lacks {missing}.")
        body["kernel"] = filter_from_json(body["kernel"])
        try:
            return cls(**body)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from err

    def save(self, path) -> Path:
        """Write the profile as JSON (atomically: a temporary file renamed into place); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path) -> ScannerProfile:
        """Read a profile JSON file.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not JSON, or not a profile (the message names the file).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ScannerProfile.load: no profile file at {str(path)!r}.")
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"ScannerProfile.load: {str(path)!r} is not a JSON file ({err}).") from err
        return cls.from_dict(d, where=f"ScannerProfile.load({str(path)!r})")


def shipped_profiles() -> list[str]:
    """Names of the profiles shipped in ``ldct_sim/profiles/`` (load them with :func:`load_profile`)."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.json"))


def load_profile(profile) -> ScannerProfile:
    """A :class:`ScannerProfile` from a profile, a dict, a JSON file path, or a shipped profile's name.

    Raises:
        FileNotFoundError: neither a file nor a shipped name (the message lists the shipped ones).
        ValueError: a file that is not a profile.
    """
    if isinstance(profile, ScannerProfile):
        return profile
    if isinstance(profile, dict):
        return ScannerProfile.from_dict(profile)
    path = Path(os.fspath(profile))
    if path.is_file():
        return ScannerProfile.load(path)
    shipped = PROFILES_DIR / f"{path.name}.json"
    if path.name == str(profile) and shipped.is_file():
        return ScannerProfile.load(shipped)
    raise FileNotFoundError(
        f"load_profile: {str(profile)!r} is neither a profile JSON file nor a shipped profile; "
        f"shipped: {shipped_profiles()}."
    )
