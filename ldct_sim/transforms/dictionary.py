"""Dictionary twins of :mod:`ldct_sim.transforms.array` (MONAI ``MapTransform``, ``d`` suffix), and the pair maker.

Each twin takes ``keys`` first, then its array class's arguments in the same order, then
``allow_missing_keys``; it holds one array transform and applies it to every key of a shallow copy of
the input dict. Random twins forward ``set_random_state`` and draw once per call: all keys share the
draw (the same I0 and noise seed).

:class:`SimulateLowDosePaird` turns ``{"image": <NDCT μ slice>}`` into a training pair: ``image`` (low
dose at the input I0), ``label`` (at the label I0, or noiseless) and optionally a noise-only image,
projecting once. Together with MONAI's readers a datalist of DICOM or NIfTI files feeds training::

    Compose([
        LoadImaged("image"), EnsureChannelFirstd("image"),
        HUToMud("image"),
        ResampleToResolutiond("image", pixel_size_mm=g.pixel_size_mm, n_pixels=g.n_pixels),
        SimulateLowDosePaird("image", geometry=g, input_i0=p.input_i0, label_i0=p.label_i0),
    ])
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, RandomizableTransform
from monai.utils import ensure_tuple_rep

from ..geometry import FanBeamGeometry
from ..projectors import DEFAULT_BACKEND
from ..simulate import DEFAULT_FORWARD_MODEL, LowDoseSimulator
from .array import (
    _MAX_SEED,
    HUToMu,
    SimulatorSource,
    MuToHU,
    RandSimulateLowDose,
    ResampleToResolution,
    SimulateLowDose,
    _as_slices,
    _check_dose,
    _check_i0_range,
    _wrap,
    simulate_low_dose_pair,
    simulation_meta,
)

__all__ = [
    "HUToMud",
    "HUToMuD",
    "HUToMuDict",
    "MuToHUd",
    "MuToHUD",
    "MuToHUDict",
    "ResampleToResolutiond",
    "ResampleToResolutionD",
    "ResampleToResolutionDict",
    "SimulateLowDosed",
    "SimulateLowDoseD",
    "SimulateLowDoseDict",
    "RandSimulateLowDosed",
    "RandSimulateLowDoseD",
    "RandSimulateLowDoseDict",
    "SimulateLowDosePaird",
    "SimulateLowDosePairD",
    "SimulateLowDosePairDict",
]


class HUToMud(MapTransform):
    """Dictionary-based :class:`~ldct_sim.transforms.array.HUToMu`: HU → μ in cm⁻¹.

    Args:
        keys: keys of the images to convert.
        energy_kev: energy in keV for μ_water. Default 60.
        min_hu: clamp in HU before converting; default -1000 (air), ``None`` for none.
        dtype: output dtype. Default ``torch.float32``.
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = HUToMu.backend

    def __init__(
        self,
        keys: KeysCollection,
        energy_kev: float = 60.0,
        min_hu: float | None = -1000.0,
        dtype=torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = HUToMu(energy_kev, min_hu, dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class MuToHUd(MapTransform):
    """Dictionary-based :class:`~ldct_sim.transforms.array.MuToHU`: μ in cm⁻¹ → HU.

    Args:
        keys: keys of the images to convert.
        energy_kev: energy in keV for μ_water. Default 60.
        dtype: output dtype. Default ``torch.float32``.
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = MuToHU.backend

    def __init__(self, keys: KeysCollection, energy_kev: float = 60.0, dtype=torch.float32, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.converter = MuToHU(energy_kev, dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class ResampleToResolutiond(MapTransform):
    """Dictionary-based :class:`~ldct_sim.transforms.array.ResampleToResolution`.

    Args:
        keys: keys of the ``(C, H, W)`` slices to resample.
        pixel_size_mm: target pixel size Δx in mm.
        n_pixels: output side in pixels. Default 512.
        mode: ``"rescale"`` (default, the object is scaled) or ``"physical"`` (true spacing, crop/pad).
        interp_mode: ``"bilinear"`` (default), ``"bicubic"`` or ``"nearest"``; one per key or one for all.
        pad_value: air value of padded pixels; one per key or one for all. Default 0.0 (cm⁻¹).
        spacing_mm: input spacing in mm for inputs without an affine.
        dtype: output dtype. Default ``torch.float32``.
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = ResampleToResolution.backend

    def __init__(
        self,
        keys: KeysCollection,
        pixel_size_mm: float,
        n_pixels: int = 512,
        mode: Literal["rescale", "physical"] = "rescale",
        interp_mode: str | Sequence[str] = "bilinear",
        pad_value: float | Sequence[float] = 0.0,
        spacing_mm: float | Sequence[float] | None = None,
        dtype=torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        interps = ensure_tuple_rep(interp_mode, len(self.keys))
        pads = ensure_tuple_rep(pad_value, len(self.keys))
        self.resamplers = [
            ResampleToResolution(pixel_size_mm, n_pixels, mode, i, p, spacing_mm, dtype) for i, p in zip(interps, pads)
        ]

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key, resampler in self.key_iterator(d, self.resamplers):
            d[key] = resampler(d[key])
        return d


class SimulateLowDosed(Randomizable, MapTransform):
    """Dictionary-based :class:`~ldct_sim.transforms.array.SimulateLowDose`.

    One noise seed is drawn per call and shared by all keys (two identical images get identical noise);
    to keep the full-dose image, copy it first (``CopyItemsd(keys="image", names="ndct")``) or use
    :class:`SimulateLowDosePaird`.

    Args:
        keys: keys of the ``(C, n, n)`` μ slices to simulate.
        geometry, i0, electronic_noise_std, backend, forward_model, filter, dtype: as the array transform.
        allow_missing_keys: don't raise if a key is missing.
        profile: a scanner profile, as the array transform (``SimulateLowDosed("image", profile="definition_as_b30f")``
            simulates each slice on its own grid with the profile's kernel and quarter dose).
    """

    backend = SimulateLowDose.backend

    def __init__(
        self,
        keys: KeysCollection,
        geometry: FanBeamGeometry | None = None,
        i0: float | None = None,
        electronic_noise_std: float = 0.0,
        backend: str = DEFAULT_BACKEND,
        forward_model: str = DEFAULT_FORWARD_MODEL,
        filter: str = "ram-lak",  # noqa: A002
        dtype=torch.float32,
        allow_missing_keys: bool = False,
        profile=None,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.sim = SimulateLowDose(geometry, i0, electronic_noise_std, backend, forward_model, filter, dtype, profile=profile)

    def set_random_state(self, seed: int | None = None, state=None) -> SimulateLowDosed:
        super().set_random_state(seed, state)
        self.sim.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        self.sim.randomize()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            d[key] = self.sim(d[key], randomize=False)
        return d


class RandSimulateLowDosed(RandomizableTransform, MapTransform):
    """Dictionary-based :class:`~ldct_sim.transforms.array.RandSimulateLowDose` (dose log-uniform in a range).

    All keys share one draw (whether to apply, I0 and noise seed).

    Args:
        keys: keys of the ``(C, n, n)`` μ slices.
        geometry, i0_range, prob, electronic_noise_std, backend, forward_model, filter, dtype: as the array
            transform.
        allow_missing_keys: don't raise if a key is missing.
        profile: a scanner profile, as the array transform.
    """

    backend = RandSimulateLowDose.backend

    def __init__(
        self,
        keys: KeysCollection,
        geometry: FanBeamGeometry | None,
        i0_range: Sequence[float],
        prob: float = 1.0,
        electronic_noise_std: float = 0.0,
        backend: str = DEFAULT_BACKEND,
        forward_model: str = DEFAULT_FORWARD_MODEL,
        filter: str = "ram-lak",  # noqa: A002
        dtype=torch.float32,
        allow_missing_keys: bool = False,
        profile=None,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.sim = RandSimulateLowDose(geometry, i0_range, 1.0, electronic_noise_std, backend, forward_model, filter, dtype,
                                       profile=profile)

    def set_random_state(self, seed: int | None = None, state=None) -> RandSimulateLowDosed:
        super().set_random_state(seed, state)
        self.sim.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.sim.randomize()
        for key in self.key_iterator(d):
            d[key] = self.sim(d[key], randomize=False)
        return d


class SimulateLowDosePaird(Randomizable, MapTransform):
    """Make a low-dose training pair from an NDCT μ slice, projecting once.

    Reads the ``(C, n, n)`` attenuation slice (cm⁻¹) under ``keys`` and writes

    * ``keys``: the low-dose reconstruction at ``input_i0`` (drawn log-uniformly per call when a
      ``(low, high)`` range is given);
    * ``label_key``: the reconstruction at ``label_i0``, or the noiseless one when ``label_i0`` is
      ``None`` (same geometry and FBP, so the label has the input's resolution);
    * ``noise_key`` (optional): the noise-only image ``input − noiseless``.

    All three come from one projection and one batched FBP (:meth:`LowDoseSimulator.run`), share one noise
    seed drawn from the transform's random state, and carry MetaTensor meta entries: ``resolution_um``,
    ``input_i0``, ``label_i0`` (``inf`` when noiseless), ``noiseless_label``, ``i0`` (this image's dose),
    ``seed``, ``geometry`` (dict), ``backend``, ``forward_model``, ``filter``, ``electronic_noise_std`` and
    ``role`` (``"input"``, ``"label"`` or ``"noise"``). With a fixed ``input_i0`` and the same random state,
    ``image`` equals :class:`~ldct_sim.transforms.array.SimulateLowDose`'s output.

    Args:
        keys: the one key holding the NDCT μ slice (overwritten by the low-dose input), e.g. ``"image"``.
        geometry: the fan-beam scan; slices must be ``(C, n, n)``, ``n = geometry.n_pixels``. ``None`` with a
            ``profile``: each slice keeps its own grid (pixel size from its affine).
        input_i0: input dose in photons per detector element per view, or a ``(low, high)`` range; default
            the profile's ``i0`` when a profile is given.
        label_i0: label dose in photons, or ``None`` (default) for a noiseless label.
        label_key: where the label goes. Default ``"label"``.
        noise_key: where the noise-only image goes; ``None`` (default) skips it.
        electronic_noise_std, backend, forward_model, filter, dtype: as :class:`SimulateLowDose`.
        allow_missing_keys: don't raise if the key is missing.
        profile: a scanner profile (:class:`~ldct_sim.profile.ScannerProfile`, its file, shipped name or
            dict): geometry, kernel, electronic noise, default input dose. Default None.

    Raises:
        ValueError: more than one key, clashing output keys, bad doses, or the input errors of
            :class:`SimulateLowDose` (3-D volume, wrong size, NaN/inf).
    """

    backend = SimulateLowDose.backend

    def __init__(
        self,
        keys: KeysCollection,
        geometry: FanBeamGeometry | None = None,
        input_i0: float | Sequence[float] | None = None,
        label_i0: float | None = None,
        label_key: str = "label",
        noise_key: str | None = None,
        electronic_noise_std: float = 0.0,
        backend: str = DEFAULT_BACKEND,
        forward_model: str = DEFAULT_FORWARD_MODEL,
        filter: str = "ram-lak",  # noqa: A002
        dtype=torch.float32,
        allow_missing_keys: bool = False,
        profile=None,
    ) -> None:
        where = "SimulateLowDosePaird"
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"{where}: `keys` must name exactly one image, got {self.keys!r}.")
        self.source = SimulatorSource(where, geometry, profile, backend, forward_model, filter, electronic_noise_std)
        if input_i0 is None:
            if self.source.profile is None:
                raise ValueError(f"{where}: `input_i0` (photons, or a (low, high) range) is required without a `profile`.")
            input_i0 = self.source.profile.i0
        if isinstance(input_i0, Sequence) and not isinstance(input_i0, str):
            self.input_i0_range: tuple[float, float] | None = _check_i0_range(where, input_i0)
            self.input_i0 = self.input_i0_range[0]
        else:
            self.input_i0_range = None
            self.input_i0 = _check_dose(where, "input_i0", input_i0)
        self.label_i0 = None if label_i0 is None else _check_dose(where, "label_i0", label_i0)
        outs = [self.keys[0], label_key] + ([noise_key] if noise_key is not None else [])
        if len(set(outs)) != len(outs):
            raise ValueError(f"{where}: `keys`, `label_key` and `noise_key` must differ, got {outs!r}.")
        self.label_key = label_key
        self.noise_key = noise_key
        self.dtype = dtype
        self._i0 = self.input_i0
        self._seed: int | None = None

    @property
    def simulator(self) -> LowDoseSimulator | None:
        """The fixed-geometry simulator (``None`` when a profile takes each input's own grid)."""
        return self.source.fixed

    def randomize(self, data=None) -> None:
        if self.input_i0_range is not None:
            lo, hi = self.input_i0_range
            self._i0 = float(math.exp(self.R.uniform(math.log(lo), math.log(hi))))
        self._seed = int(self.R.randint(0, _MAX_SEED))

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            sim = self.source(d[key])  # before the conversion, which gives plain arrays an identity affine
            img, t = _as_slices(d[key], type(self).__name__, self.source.n_pixels)
            low, label, noise = simulate_low_dose_pair(
                sim, t, self._i0, self.label_i0, seed=self._seed, with_noise=self.noise_key is not None
            )
            pair = {
                "input_i0": self._i0,
                "label_i0": math.inf if self.label_i0 is None else self.label_i0,
                "noiseless_label": self.label_i0 is None,
            }
            outs = [(key, low, "input", self._i0), (self.label_key, label, "label", self.label_i0)]
            if noise is not None:
                outs.append((self.noise_key, noise, "noise", self._i0))
            for out_key, out, role, i0 in outs:
                meta = simulation_meta(sim, i0, self._seed) | pair | {"role": role}
                d[out_key] = _wrap(out, img, sim, meta, self.dtype)
        return d


HUToMuD = HUToMuDict = HUToMud
MuToHUD = MuToHUDict = MuToHUd
ResampleToResolutionD = ResampleToResolutionDict = ResampleToResolutiond
SimulateLowDoseD = SimulateLowDoseDict = SimulateLowDosed
RandSimulateLowDoseD = RandSimulateLowDoseDict = RandSimulateLowDosed
SimulateLowDosePairD = SimulateLowDosePairDict = SimulateLowDosePaird
