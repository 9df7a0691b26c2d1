"""Fan-beam CT geometry with a flat detector, and the six systems of the resolution-transfer study.

Conventions (shared by every projector backend):

* Lengths in mm, angles in radians, photon counts as numbers of photons.
* The image is ``n_pixels × n_pixels`` square pixels of side ``pixel_size_mm``, centred on the
  rotation axis. Pixel ``(row, col)`` sits at ``x = (col - (n-1)/2)·Δx`` and
  ``y = ((n-1)/2 - row)·Δx``: x to the right, y up, row 0 at the top (ASTRA's convention).
* At view angle θ the source is at ``SOD·(sin θ, -cos θ)``, the flat detector's centre at
  ``-(SDD - SOD)·(sin θ, -cos θ)`` and detector coordinate ``u`` runs along ``(cos θ, sin θ)``;
  detector element ``i`` is centred at ``u = (i - (n_det-1)/2)·det_pixel_mm``.
* ``n_views`` angles cover a full 360° scan without repeating the end point:
  ``θ_k = angle_offset + 2π k / n_views``.

``geometry.py`` never imports ASTRA: backends convert with their own adapters.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FanBeamGeometry",
    "ScannerPreset",
    "PAPER_PRESETS",
    "DEFAULT_N_VIEWS",
    "get_preset",
    "ClinicalPreset",
    "CLINICAL_PRESETS",
    "get_clinical_preset",
]

#: Default number of views over 360°. Angular sampling of an N×N image needs about π/2·N views
#: (804 for N = 512); 720 (0.5° steps, a common bench-top choice) keeps view aliasing outside the
#: body for abdominal slices and halves the cost against 1440. Override ``n_views`` as needed.
DEFAULT_N_VIEWS = 720


def _positive(where: str, name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{where}: `{name}` must be a number, got {value!r}.") from err
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: `{name}` must be a positive finite number, got {value!r}.")
    return value


def _positive_int(where: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{where}: `{name}` must be a positive integer, got {value!r}.")
    return int(value)


@dataclass(frozen=True, kw_only=True, eq=False)
class FanBeamGeometry:
    """A 2-D fan-beam scan with a flat detector over a full circle, as a value.

    Args:
        pixel_size_mm: side of an image pixel Δx in mm.
        n_pixels: image side in pixels (square image). Default 512.
        sod_mm: source-to-rotation-centre distance in mm.
        sdd_mm: source-to-detector distance in mm; must exceed ``sod_mm``.
        det_pixel_mm: detector element pitch in mm. Default ``sdd_mm / sod_mm * pixel_size_mm``
            (the study's Δdet = SDD/SOD·Δx: one image pixel at the centre maps to one element).
        n_det: number of detector elements. Default: the fewest that see the whole image
            circle (the circle through the image corners) at this magnification.
        n_views: number of views over 360°. Default :data:`DEFAULT_N_VIEWS` (720).
        angle_offset: angle of the first view in radians. Default 0.

    Raises:
        ValueError: non-positive sizes, ``sdd_mm <= sod_mm``, or a source inside the image circle.

    Example:
        >>> g = FanBeamGeometry(pixel_size_mm=0.625, n_pixels=512, sod_mm=750.0, sdd_mm=1500.0)
        >>> g.det_pixel_mm, g.n_det
        (1.25, 760)
        >>> g[::2].n_views
        360
    """

    pixel_size_mm: float
    n_pixels: int = 512
    sod_mm: float
    sdd_mm: float
    det_pixel_mm: float | None = None
    n_det: int | None = None
    n_views: int = DEFAULT_N_VIEWS
    angle_offset: float = 0.0
    angle_step: float | None = field(default=None, repr=False)

    def __post_init__(self):
        where = "FanBeamGeometry"
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass setter
        set_("pixel_size_mm", _positive(where, "pixel_size_mm", self.pixel_size_mm))
        set_("n_pixels", _positive_int(where, "n_pixels", self.n_pixels))
        set_("sod_mm", _positive(where, "sod_mm", self.sod_mm))
        set_("sdd_mm", _positive(where, "sdd_mm", self.sdd_mm))
        if self.sdd_mm <= self.sod_mm:
            raise ValueError(f"{where}: `sdd_mm` ({self.sdd_mm}) must exceed `sod_mm` ({self.sod_mm}).")
        radius = self.fov_radius_mm
        if radius >= self.sod_mm:
            raise ValueError(
                f"{where}: the image circle (radius {radius:.1f} mm = n_pixels·pixel_size_mm/√2) must lie "
                f"inside the source circle, `sod_mm` ({self.sod_mm}); use a larger sod_mm or a smaller image."
            )
        if self.det_pixel_mm is None:
            set_("det_pixel_mm", self.sdd_mm / self.sod_mm * self.pixel_size_mm)
        set_("det_pixel_mm", _positive(where, "det_pixel_mm", self.det_pixel_mm))
        if self.n_det is None:
            # a ray tangent to the image circle meets the detector at u = SDD·R/√(SOD² − R²)
            u_max = self.sdd_mm * radius / math.sqrt(self.sod_mm**2 - radius**2)
            set_("n_det", int(math.ceil(2 * u_max / self.det_pixel_mm - 1e-6)))
        set_("n_det", _positive_int(where, "n_det", self.n_det))
        set_("n_views", _positive_int(where, "n_views", self.n_views))
        offset = float(self.angle_offset)
        if not math.isfinite(offset):
            raise ValueError(f"{where}: `angle_offset` must be finite, got {self.angle_offset!r}.")
        set_("angle_offset", offset)
        step = 2 * math.pi / self.n_views if self.angle_step is None else float(self.angle_step)
        set_("angle_step", step)

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def odd_mm(self) -> float:
        """Rotation-centre-to-detector distance, SDD − SOD, in mm."""
        return self.sdd_mm - self.sod_mm

    @property
    def magnification(self) -> float:
        """SDD / SOD."""
        return self.sdd_mm / self.sod_mm

    @property
    def fov_mm(self) -> float:
        """Side of the reconstructed square image, n_pixels·Δx, in mm."""
        return self.n_pixels * self.pixel_size_mm

    @property
    def fov_radius_mm(self) -> float:
        """Radius of the circle through the image corners, in mm."""
        return self.fov_mm / math.sqrt(2.0)

    @property
    def fan_angle(self) -> float:
        """Full fan angle covered by the detector, in radians."""
        return 2.0 * math.atan(0.5 * self.n_det * self.det_pixel_mm / self.sdd_mm)

    @property
    def angles(self) -> np.ndarray:
        """View angles θ_k in radians, float64 array of length ``n_views``."""
        return self.angle_offset + self.angle_step * np.arange(self.n_views, dtype=np.float64)

    @property
    def det_positions_mm(self) -> np.ndarray:
        """Detector element centres u_i in mm, float64 array of length ``n_det``."""
        return (np.arange(self.n_det, dtype=np.float64) - (self.n_det - 1) / 2.0) * self.det_pixel_mm

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.n_pixels, self.n_pixels)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        """(n_views, n_det)."""
        return (self.n_views, self.n_det)

    @property
    def is_full_scan(self) -> bool:
        return math.isclose(self.angle_step * self.n_views, 2 * math.pi, rel_tol=1e-9)

    # ---- value semantics ----------------------------------------------------------------------
    def replace(self, **changes) -> FanBeamGeometry:
        """A copy with some fields changed; derived defaults (detector pitch and count) are recomputed
        unless given. ``replace(pixel_size_mm=...)`` keeps the magnification rule Δdet = SDD/SOD·Δx."""
        fields = self.to_dict()
        for key in ("det_pixel_mm", "n_det"):
            # n_det also depends on the detector pitch: keeping it when only the pitch changes would
            # silently truncate (finer pitch) or over-extend (coarser pitch) the detector.
            triggers = ("pixel_size_mm", "n_pixels", "sod_mm", "sdd_mm") + (("det_pixel_mm",) if key == "n_det" else ())
            if key not in changes and any(k in changes for k in triggers):
                fields[key] = None
        if "n_views" in changes and "angle_step" not in changes:
            fields["angle_step"] = None
        fields.update(changes)
        return FanBeamGeometry(**fields)

    def to_dict(self) -> dict:
        """Plain-JSON fields, enough to rebuild the geometry with ``FanBeamGeometry(**d)``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> FanBeamGeometry:
        return cls(**d)

    @classmethod
    def from_preset(cls, resolution_um: float, **changes) -> FanBeamGeometry:
        """The geometry of a :data:`PAPER_PRESETS` system, optionally with fields changed."""
        return get_preset(resolution_um).geometry(**changes)

    def __getitem__(self, key) -> FanBeamGeometry:
        """Slice the views: ``g[::2]`` keeps every other view, as a new geometry."""
        if not isinstance(key, slice):
            raise TypeError("FanBeamGeometry: only view slices such as g[::2] are supported; detector indexing is not.")
        start, stop, step = key.indices(self.n_views)
        if step <= 0:
            raise ValueError("FanBeamGeometry: view slices must have a positive step.")
        n = len(range(start, stop, step))
        if n == 0:
            raise ValueError(f"FanBeamGeometry: the slice {key} selects no views.")
        return dataclasses.replace(
            self,
            n_views=n,
            angle_offset=self.angle_offset + start * self.angle_step,
            angle_step=self.angle_step * step,
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, FanBeamGeometry):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()
        for k in a:
            if isinstance(a[k], float) or isinstance(b[k], float):
                if not math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif a[k] != b[k]:
                return False
        return True

    def __hash__(self):
        return hash((round(self.pixel_size_mm, 9), self.n_pixels, round(self.sod_mm, 6), self.n_views, self.n_det))

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.to_dict().items() if not (k == "angle_step" and self.is_full_scan)]
        return f"FanBeamGeometry({', '.join(parts)})"


@dataclass(frozen=True)
class ScannerPreset:
    """One system of the study's Table 1: resolution (µm), SOD/SDD (mm), input and label I0 (photons)."""

    resolution_um: float
    input_i0: float
    label_i0: float
    sdd_mm: float
    sod_mm: float
    n_pixels: int = 512

    @property
    def pixel_size_mm(self) -> float:
        return self.resolution_um / 1000.0

    def geometry(self, **changes) -> FanBeamGeometry:
        """The preset's :class:`FanBeamGeometry` (512² image at Δx, full scan), with optional changes."""
        fields = dict(pixel_size_mm=self.pixel_size_mm, n_pixels=self.n_pixels, sod_mm=self.sod_mm, sdd_mm=self.sdd_mm)
        fields.update(changes)
        return FanBeamGeometry(**fields)


#: Table 1 of Zhang et al., QIMS 2024 (shared/seeds/000_*): keyed by spatial resolution in µm.
PAPER_PRESETS: dict[float, ScannerPreset] = {
    p.resolution_um: p
    for p in (
        ScannerPreset(62.5, input_i0=3.6e4, label_i0=1.8e5, sdd_mm=150.0, sod_mm=75.0),
        ScannerPreset(125.0, input_i0=1.5e4, label_i0=7.5e4, sdd_mm=300.0, sod_mm=150.0),
        ScannerPreset(250.0, input_i0=1.0e4, label_i0=5.0e4, sdd_mm=600.0, sod_mm=300.0),
        ScannerPreset(375.0, input_i0=1.5e4, label_i0=7.5e4, sdd_mm=900.0, sod_mm=450.0),
        ScannerPreset(500.0, input_i0=2.5e4, label_i0=1.25e5, sdd_mm=1200.0, sod_mm=600.0),
        ScannerPreset(625.0, input_i0=5.6e4, label_i0=2.8e5, sdd_mm=1500.0, sod_mm=750.0),
    )
}


def get_preset(resolution_um) -> ScannerPreset:
    """Look up a :data:`PAPER_PRESETS` entry by resolution in µm (``62.5``, ``"625"``, ...).

    Raises:
        ValueError: the resolution is not one of the six presets.
    """
    try:
        key = float(resolution_um)
    except (TypeError, ValueError):
        key = None
    for res, preset in PAPER_PRESETS.items():
        if key is not None and math.isclose(res, key, rel_tol=1e-9):
            return preset
    raise ValueError(
        f"Unknown preset {resolution_um!r}; expected one of {sorted(PAPER_PRESETS)} (resolution in µm)."
    )


@dataclass(frozen=True)
class ClinicalPreset:
    """A clinical scanner's fan-beam system, for images at their own pixel size.

    Unlike the study's :class:`ScannerPreset` (a fixed 512² grid per resolution), a clinical preset
    fixes the hardware (distances, detector pitch, views) and takes the image grid from the input:
    ``preset.geometry(pixel_size_mm=0.742, n_pixels=512)``.

    The detector is modelled flat (``FanBeamGeometry``'s only kind): a curved detector of angular
    pitch δ at radius SDD becomes a flat one of pitch ``SDD·δ`` at its centre (the same ray spacing
    SOD·δ at the rotation axis near the centre, slightly coarser towards the fan's edges).

    Attributes:
        name: key in :data:`CLINICAL_PRESETS`.
        sod_mm, sdd_mm: source-to-isocentre and source-to-detector distances, mm.
        det_pixel_mm: flat-detector sampling pitch at the detector, mm.
        n_views: views per 360° rotation.
        kvp: tube voltage, kV (documentation; the simulation is monochromatic).
        energy_kev: effective energy for HU → μ, keV.
        scan_fov_mm: diameter of the scanner's measured field of view, mm.
        description: source of the numbers.
    """

    name: str
    sod_mm: float
    sdd_mm: float
    det_pixel_mm: float
    n_views: int
    kvp: float
    energy_kev: float
    scan_fov_mm: float
    description: str = ""

    def geometry(self, pixel_size_mm: float, n_pixels: int = 512, **changes) -> FanBeamGeometry:
        """The :class:`FanBeamGeometry` of this scanner for an ``n_pixels²`` image of ``pixel_size_mm`` pixels.

        The detector spans the circle through the image corners (the geometry's default ``n_det``), which
        for a 380 mm image (537 mm corner circle) is a little wider than the scanner's own fan: the corners
        of a square image lie outside a real scanner's measured field of view. Other fields can be changed
        with keyword arguments (``n_views=...``).

        Raises:
            ValueError: a bad size (from :class:`FanBeamGeometry`).
        """
        fields = dict(pixel_size_mm=pixel_size_mm, n_pixels=n_pixels, sod_mm=self.sod_mm, sdd_mm=self.sdd_mm,
                      det_pixel_mm=self.det_pixel_mm, n_views=self.n_views)
        fields.update(changes)
        return FanBeamGeometry(**fields)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Siemens SOMATOM Definition AS(+), the scanner of the AAPM–Mayo Low Dose CT Grand Challenge:
# * SOD 595 mm, SDD 1085.6 mm, 100 kVp: DICOM headers of the challenge's images.
# * 736 detector channels at an angular pitch of 0.0011844 rad (1.2858 mm at SDD 1085.6 mm, 0.705 mm at
#   the rotation axis) and 1152 projections per rotation: FreeCT_wFBP's scanner file
#   (github.com/FreeCT/FreeCT, applications/fct_wfbp/resources/scanners/definitionas.scanner; Hoffman et
#   al., "FreeCT_wFBP: a robust, efficient, open-source implementation of weighted filtered
#   backprojection for helical, fan-beam CT", Med Phys 43(3), 2016). The fan of 736 × 0.0011844 rad
#   (49.9°) covers a 500 mm scan field of view.
# * The in-plane flying focal spot, which interleaves two focal positions to double the ray density,
#   is not modelled: the simulated noise texture is matched to real images by the fitted kernel instead
#   (see ldct_sim.calibrate), which absorbs the difference.
# * Effective energy 60 keV: spekpy 2.5.4 spectra at 100 kVp (7° anode, 3.5 mm Al, with or without
#   0.9 mm Ti) give water's spectrum-weighted attenuation equal to its value at 57–68 keV behind
#   10–30 cm of water (an abdomen); 60 keV is also the study presets' energy. Beam hardening is not
#   simulated, and the fitted I0 absorbs the choice.
CLINICAL_PRESETS: dict[str, ClinicalPreset] = {
    "definition_as": ClinicalPreset(
        name="definition_as",
        sod_mm=595.0,
        sdd_mm=1085.6,
        det_pixel_mm=round(1085.6 * 0.0011844, 4),  # 1.2858 mm
        n_views=1152,
        kvp=100.0,
        energy_kev=60.0,
        scan_fov_mm=500.0,
        description="Siemens SOMATOM Definition AS+ (AAPM-Mayo LDCT Grand Challenge): DICOM headers; "
        "736 channels x 0.0011844 rad and 1152 views per rotation from FreeCT_wFBP (Hoffman et al., Med Phys 2016); "
        "flat-detector approximation, no flying focal spot.",
    ),
}


def get_clinical_preset(name: str) -> ClinicalPreset:
    """Look up a :data:`CLINICAL_PRESETS` entry by name (``"definition_as"``; case and ``-``/``_`` ignored).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    if key not in CLINICAL_PRESETS:
        raise ValueError(f"Unknown clinical preset {name!r}; expected one of {sorted(CLINICAL_PRESETS)}.")
    return CLINICAL_PRESETS[key]
