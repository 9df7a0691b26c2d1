"""FanBeamGeometry as a value, and the six systems of Zhang et al. (QIMS 2024), Table 1."""

import dataclasses
import json
import math

import numpy as np
import pytest

from ldct_sim.geometry import DEFAULT_N_VIEWS, PAPER_PRESETS, FanBeamGeometry, get_preset

# Table 1 of shared/seeds/000_*: resolution (µm) -> (input I0, label I0, SDD mm, SOD mm)
TABLE_1 = {
    62.5: (3.6e4, 1.8e5, 150.0, 75.0),
    125.0: (1.5e4, 7.5e4, 300.0, 150.0),
    250.0: (1.0e4, 5.0e4, 600.0, 300.0),
    375.0: (1.5e4, 7.5e4, 900.0, 450.0),
    500.0: (2.5e4, 1.25e5, 1200.0, 600.0),
    625.0: (5.6e4, 2.8e5, 1500.0, 750.0),
}


def small(**changes) -> FanBeamGeometry:
    kw = dict(pixel_size_mm=1.0, n_pixels=64, sod_mm=200.0, sdd_mm=400.0, n_views=90)
    kw.update(changes)
    return FanBeamGeometry(**kw)


def test_paper_presets_match_table_1():
    assert sorted(PAPER_PRESETS) == sorted(TABLE_1)
    for res, (input_i0, label_i0, sdd, sod) in TABLE_1.items():
        p = PAPER_PRESETS[res]
        assert (p.resolution_um, p.input_i0, p.label_i0, p.sdd_mm, p.sod_mm) == (res, input_i0, label_i0, sdd, sod)
        assert p.label_i0 == 5 * p.input_i0  # the study's labels are five times the input dose
        assert p.n_pixels == 512
        assert p.pixel_size_mm == res / 1000.0


@pytest.mark.parametrize("res", sorted(TABLE_1))
def test_preset_det_pixel_is_magnified_pixel(res):
    g = get_preset(res).geometry()
    assert g.pixel_size_mm == res / 1000.0
    assert g.det_pixel_mm == pytest.approx(g.sdd_mm / g.sod_mm * g.pixel_size_mm, rel=1e-12)
    assert g.magnification == 2.0  # every system of Table 1 has SDD = 2·SOD
    assert g.n_pixels == 512 and g.n_views == DEFAULT_N_VIEWS and g.is_full_scan


def _u_of_point(g: FanBeamGeometry, x, y, theta):
    """Flat-detector coordinate of point (x, y) mm at view θ: SDD(x cosθ + y sinθ)/(SOD − x sinθ + y cosθ)."""
    return g.sdd_mm * (x * np.cos(theta) + y * np.sin(theta)) / (g.sod_mm - x * np.sin(theta) + y * np.cos(theta))


@pytest.mark.parametrize(
    "g",
    [get_preset(625).geometry(), get_preset(62.5).geometry(), small(), small(sod_mm=60.0, sdd_mm=90.0), small(n_pixels=33)],
    ids=["625um", "62.5um", "small", "wide-fan", "odd"],
)
def test_n_det_covers_image_circle(g):
    r = g.fov_radius_mm
    u_max = g.sdd_mm * r / math.sqrt(g.sod_mm**2 - r**2)  # ray tangent to the image circle
    half_width = 0.5 * g.n_det * g.det_pixel_mm
    assert half_width >= u_max - 1e-9
    assert half_width - g.det_pixel_mm < u_max  # and no more elements than needed
    # every image corner projects onto the detector in every view
    h = 0.5 * g.fov_mm
    theta = np.linspace(0, 2 * np.pi, 3601)
    for cx, cy in [(h, h), (h, -h), (-h, h), (-h, -h)]:
        assert np.abs(_u_of_point(g, cx, cy, theta)).max() <= half_width


def test_preset_625_detector():
    g = get_preset(625).geometry()
    assert (g.det_pixel_mm, g.n_det) == (1.25, 760)
    assert g.sinogram_shape == (720, 760) and g.image_shape == (512, 512)


def test_angles_cover_full_circle_without_repeating_endpoint():
    g = small(n_views=8, angle_offset=0.25)
    np.testing.assert_allclose(g.angles, 0.25 + np.arange(8) * np.pi / 4)
    assert g.is_full_scan
    assert g.det_positions_mm.shape == (g.n_det,)
    np.testing.assert_allclose(g.det_positions_mm + g.det_positions_mm[::-1], 0.0, atol=1e-12)  # centred
    np.testing.assert_allclose(np.diff(g.det_positions_mm), g.det_pixel_mm)


@pytest.mark.parametrize(
    "g",
    [get_preset(625).geometry(), small(angle_offset=0.1, det_pixel_mm=0.3, n_det=11), small()[3:40:2], small(n_views=7)[1::3]],
    ids=["preset", "explicit-detector", "short-scan", "sliced"],
)
def test_repr_round_trips(g):
    text = repr(g)
    assert text.startswith("FanBeamGeometry(")
    again = eval(text, {"FanBeamGeometry": FanBeamGeometry})  # noqa: S307 - the point of the test
    assert again == g
    assert again.angles.tolist() == pytest.approx(g.angles.tolist(), abs=1e-12)
    assert FanBeamGeometry.from_dict(json.loads(json.dumps(g.to_dict()))) == g


def test_equality_is_tolerant_and_hash_consistent():
    g = small()
    twin = small(pixel_size_mm=1.0 + 1e-13)
    assert g == twin and hash(g) == hash(twin)
    assert g == small()  # a fresh instance
    assert g != "not a geometry"


@pytest.mark.parametrize(
    "changes",
    [
        {"pixel_size_mm": 1.01},
        {"n_pixels": 65},
        {"sod_mm": 201.0},
        {"sdd_mm": 401.0},
        {"n_views": 91},
        {"angle_offset": 0.01},
        {"det_pixel_mm": 2.1},
        {"n_det": 200},
    ],
)
def test_geometries_that_differ_are_unequal(changes):
    assert small() != small(**changes)


def test_geometry_is_frozen():
    g = small()
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.sod_mm = 300.0


def test_slicing_views_gives_new_geometry():
    g = small(n_views=720)
    half = g[::2]
    assert half.n_views == 360 and half.is_full_scan
    np.testing.assert_allclose(half.angles, g.angles[::2])
    np.testing.assert_allclose(g[1::2].angles, g.angles[1::2])
    assert g[::2][::2] == g[::4]
    part = g[10:100]
    assert part.n_views == 90 and not part.is_full_scan
    np.testing.assert_allclose(part.angles, g.angles[10:100])
    # detector and image are untouched
    assert (half.n_det, half.det_pixel_mm, half.n_pixels) == (g.n_det, g.det_pixel_mm, g.n_pixels)
    assert g.n_views == 720  # the original is unchanged


def test_slicing_errors_name_the_problem():
    g = small()
    with pytest.raises(TypeError, match=r"only view slices such as g\[::2\] are supported"):
        g[0]
    with pytest.raises(ValueError, match="view slices must have a positive step"):
        g[::-1]
    with pytest.raises(ValueError, match="selects no views"):
        g[5:5]


def test_replace_keeps_magnification_rule():
    g = get_preset(625).geometry()
    finer = g.replace(pixel_size_mm=0.3125)
    assert finer.det_pixel_mm == pytest.approx(0.625)
    assert finer.n_views == g.n_views and finer.sod_mm == g.sod_mm
    assert g.replace(n_views=360) == g[::2]
    assert FanBeamGeometry.from_preset(125, n_views=100) == get_preset(125).geometry(n_views=100)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_replace_detector_pitch_recounts_elements(factor):
    """A new pitch with the old count would truncate the detector (finer pitch) or waste elements."""
    g = get_preset(625).geometry()
    g2 = g.replace(det_pixel_mm=g.det_pixel_mm * factor)
    assert g2.det_pixel_mm == g.det_pixel_mm * factor
    assert g2 == FanBeamGeometry(**{**g.to_dict(), "det_pixel_mm": g2.det_pixel_mm, "n_det": None})
    assert abs(g2.n_det * g2.det_pixel_mm - g.n_det * g.det_pixel_mm) <= max(g.det_pixel_mm, g2.det_pixel_mm)
    assert g.replace(det_pixel_mm=1.0, n_det=5).n_det == 5  # an explicit count still wins


@pytest.mark.parametrize("key", [62.5, "62.5", 625, "625", 625.0])
def test_get_preset_accepts_numbers_and_strings(key):
    assert get_preset(key).resolution_um == float(key)


@pytest.mark.parametrize("key", [600, "abc", None])
def test_rejects_unknown_preset(key):
    with pytest.raises(ValueError, match=rf"Unknown preset {key!r}; expected one of \[62.5, 125.0"):
        get_preset(key)


@pytest.mark.parametrize("sdd", [500.0, 541.0])
def test_rejects_sdd_not_greater_than_sod(sdd):
    with pytest.raises(ValueError, match=rf"FanBeamGeometry: `sdd_mm` \({sdd}\) must exceed `sod_mm` \(541.0\)"):
        FanBeamGeometry(pixel_size_mm=1.0, n_pixels=64, sod_mm=541.0, sdd_mm=sdd)


@pytest.mark.parametrize(
    "name, value",
    [
        ("pixel_size_mm", 0.0),
        ("pixel_size_mm", -1.0),
        ("pixel_size_mm", float("nan")),
        ("pixel_size_mm", float("inf")),
        ("sod_mm", 0.0),
        ("sdd_mm", -400.0),
        ("det_pixel_mm", 0.0),
    ],
)
def test_rejects_non_positive_lengths(name, value):
    with pytest.raises(ValueError, match=rf"FanBeamGeometry: `{name}` must be a positive finite number"):
        small(**{name: value})


@pytest.mark.parametrize(
    "name, value",
    [("n_pixels", 0), ("n_pixels", -3), ("n_pixels", 2.5), ("n_pixels", True), ("n_det", 0), ("n_views", 0)],
)
def test_rejects_non_positive_counts(name, value):
    with pytest.raises(ValueError, match=rf"FanBeamGeometry: `{name}` must be a positive integer, got {value!r}"):
        small(**{name: value})


def test_rejects_non_numeric_length():
    with pytest.raises(TypeError, match="FanBeamGeometry: `sod_mm` must be a number, got 'far'"):
        small(sod_mm="far")


def test_rejects_image_circle_outside_source_circle():
    # 512 × 1 mm: image circle radius 362 mm > SOD 300 mm
    with pytest.raises(ValueError, match="the image circle .* must lie inside the source circle"):
        FanBeamGeometry(pixel_size_mm=1.0, n_pixels=512, sod_mm=300.0, sdd_mm=600.0)


def test_rejects_non_finite_angle_offset():
    with pytest.raises(ValueError, match="`angle_offset` must be finite"):
        small(angle_offset=float("inf"))
