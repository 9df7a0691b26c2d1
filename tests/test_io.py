"""Reading CT: pydicom's real CT slice, synthetic DICOM series, NIfTI volumes, and bad files."""

from __future__ import annotations

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.uid import generate_uid

nib = pytest.importorskip("nibabel")

from ldct_sim.io import CTReadError, find_ct, iter_ct_slices, slice_affine  # noqa: E402

CT_SMALL = pydicom.data.get_testdata_file("CT_small.dcm")


def write_series(folder, z_positions, *, patient="P1", series_uid=None, names=None, slope=1.0, intercept=-1024.0,
                 modality="CT", with_position=True):
    """A DICOM series made from CT_small: slice k holds the constant stored value 1000 + 10·k."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    paths = []
    for k, z in enumerate(z_positions):
        ds = pydicom.dcmread(CT_SMALL)
        ds.PatientID = patient
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.Modality = modality
        if with_position:
            ds.ImagePositionPatient = [-42.0, -42.0, float(z)]
        else:
            del ds.ImagePositionPatient
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = np.full((128, 128), 1000 + 10 * k, dtype=np.int16).tobytes()
        path = folder / (names[k] if names else f"slice{k:03d}.dcm")
        ds.save_as(path)
        paths.append(path)
    return paths


def test_ct_small_gives_hu_and_its_pixel_spacing():
    inv = find_ct(CT_SMALL)
    assert not inv.failures and len(inv.sources) == 1 and inv.n_slices == 1
    s = inv.sources[0].read_slice(0)
    raw = pydicom.dcmread(CT_SMALL).pixel_array
    assert s.hu.dtype == np.float32 and s.hu.shape == (128, 128)
    np.testing.assert_array_equal(s.hu, raw.astype(np.float32) - 1024.0)  # slope 1, intercept -1024
    assert s.spacing_mm == pytest.approx((0.661468, 0.661468))
    assert -1024 <= s.hu.min() and s.hu.max() < 3072  # a CT range, not raw stored values
    assert -300 < np.median(s.hu) < 200  # mostly soft tissue
    assert s.group_id == "1CT1" and s.slice_id.startswith("1CT1_") and s.slice_id.endswith("_0000")


def test_series_is_sorted_by_position_along_the_normal_not_by_file_name(tmp_path):
    # file names in the opposite order of z
    write_series(tmp_path, [30.0, 10.0, 20.0], names=["a.dcm", "c.dcm", "b.dcm"])
    slices = list(iter_ct_slices(tmp_path))
    # stored values 1000 + 10k in write order k: z=10 -> k=1, z=20 -> k=2, z=30 -> k=0
    assert [float(s.hu[0, 0]) for s in slices] == [1010 - 1024, 1020 - 1024, 1000 - 1024]
    assert [s.index for s in slices] == [0, 1, 2]


def test_series_without_positions_is_sorted_by_instance_number(tmp_path):
    write_series(tmp_path, [0, 0, 0], names=["z.dcm", "y.dcm", "x.dcm"], with_position=False)
    assert [float(s.hu[0, 0]) + 1024 for s in iter_ct_slices(tmp_path)] == [1000, 1010, 1020]


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    write_series(tmp_path, [0.0], slope=2.0, intercept=-3000.0)
    (s,) = iter_ct_slices(tmp_path)
    assert float(s.hu[5, 5]) == 2.0 * 1000 - 3000.0


def test_series_are_grouped_by_uid_and_split_groups_by_patient(tmp_path):
    write_series(tmp_path / "a", [0, 1, 2], patient="alice")
    write_series(tmp_path / "b", [0, 1], patient="bob")
    write_series(tmp_path / "c", [5, 6], patient="alice")  # a second series of the same patient
    inv = find_ct(tmp_path)
    assert sorted(s.n_slices for s in inv.sources) == [2, 2, 3]
    assert sorted(s.group_id for s in inv.sources) == ["alice", "alice", "bob"]
    assert len({s.source_id for s in inv.sources}) == 3
    assert [s.source_id for s in find_ct(tmp_path).sources] == [s.source_id for s in inv.sources]  # stable


def test_corrupt_dicom_is_collected_as_a_failure_and_the_rest_is_read(tmp_path):
    write_series(tmp_path, [0, 1])
    (tmp_path / "broken.dcm").write_bytes(b"this is not DICOM" * 10)
    (tmp_path / "notes.txt").write_text("ignored: not a CT extension")
    inv = find_ct(tmp_path)
    assert inv.n_slices == 2
    assert [f.path.endswith("broken.dcm") for f in inv.failures] == [True]
    assert "not a readable DICOM file" in inv.failures[0].reason
    with pytest.raises(CTReadError, match="broken.dcm: not a readable DICOM file"):
        list(iter_ct_slices(tmp_path))
    assert len(list(iter_ct_slices(tmp_path, skip_errors=True))) == 2


def test_truncated_pixel_data_raises_ctreaderror_when_read(tmp_path):
    (path,) = write_series(tmp_path, [0])
    data = path.read_bytes()
    path.write_bytes(data[:-20000])  # header intact, pixel data cut short
    inv = find_ct(tmp_path)
    assert inv.n_slices == 1 and not inv.failures
    with pytest.raises(CTReadError, match="cannot decode DICOM pixel data"):
        inv.sources[0].read_slice(0)


def test_non_ct_modality_is_refused(tmp_path):
    write_series(tmp_path, [0], modality="MR")
    inv = find_ct(tmp_path)
    assert inv.n_slices == 0 and "modality is 'MR'" in inv.failures[0].reason


def test_nifti_volume_yields_axial_slices_in_radiological_layout(tmp_path):
    vol = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)  # (x: R, y: A, z: S)
    nib.save(nib.Nifti1Image(vol, np.diag([0.5, 0.7, 2.0, 1.0])), tmp_path / "case.nii.gz")
    inv = find_ct(tmp_path)
    (src,) = inv.sources
    assert (src.kind, src.source_id, src.n_slices) == ("nifti", "case", 4)
    s = src.read_slice(1)
    # rows run posterior-ward (decreasing y), columns to the patient's left (decreasing x)
    np.testing.assert_array_equal(s.hu, vol[::-1, ::-1, 1].T)
    assert s.spacing_mm == (0.7, 0.5)


def test_nifti_in_lps_gives_the_same_picture_as_in_ras(tmp_path):
    vol = np.random.default_rng(0).normal(size=(6, 5, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 1.0, 1.0])), tmp_path / "ras.nii")
    nib.save(nib.Nifti1Image(vol[::-1, ::-1].copy(), np.diag([-1.0, -1.0, 1.0, 1.0])), tmp_path / "lps.nii")
    a, b = (find_ct(tmp_path / n).sources[0] for n in ("ras.nii", "lps.nii"))
    for k in range(3):
        np.testing.assert_array_equal(a.read_slice(k).hu, b.read_slice(k).hu)


def test_slice_written_with_slice_affine_reads_back_unchanged(tmp_path):
    img = np.random.default_rng(1).normal(size=(7, 9)).astype(np.float32)
    nib.save(nib.Nifti1Image(img, slice_affine((0.3, 0.4), img.shape)), tmp_path / "s.nii.gz")
    (s,) = iter_ct_slices(tmp_path / "s.nii.gz")
    np.testing.assert_array_equal(s.hu, img)
    assert s.spacing_mm == pytest.approx((0.3, 0.4))


def test_nifti_scaling_is_applied(tmp_path):
    img = nib.Nifti1Image(np.full((4, 4, 1), 1000, np.int16), np.eye(4))
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    (s,) = iter_ct_slices(tmp_path)
    assert float(s.hu[0, 0]) == -24.0


def test_nan_pixels_are_refused_with_a_clear_error(tmp_path):
    vol = np.zeros((4, 4, 2), np.float32)
    vol[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "nan.nii.gz")
    src = find_ct(tmp_path).sources[0]
    src.read_slice(0)
    with pytest.raises(CTReadError, match="slice 1 holds 1 NaN or infinite pixels"):
        src.read_slice(1)


def test_four_d_nifti_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), tmp_path / "t.nii.gz")
    inv = find_ct(tmp_path)
    assert not inv.sources and "expected a 2-D slice or a 3-D volume" in inv.failures[0].reason


def test_truncated_nifti_raises_ctreaderror(tmp_path):
    path = tmp_path / "cut.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(32, 32, 8)).astype(np.float32), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[:2000])
    inv = find_ct(tmp_path)
    if inv.failures:  # the header itself may already be unreadable
        assert "NIfTI" in inv.failures[0].reason
    else:
        with pytest.raises(CTReadError, match="cannot read NIfTI data"):
            inv.sources[0].read_slice(0)


def test_mixed_folder_and_missing_path(tmp_path):
    write_series(tmp_path / "dicom", [0, 1])
    (tmp_path / "vols").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), tmp_path / "vols" / "v1.nii.gz")
    inv = find_ct(tmp_path)
    assert sorted(s.kind for s in inv.sources) == ["dicom", "nifti"] and inv.n_slices == 5
    assert "vols__v1" in [s.source_id for s in inv.sources]
    with pytest.raises(FileNotFoundError, match="`path` does not exist"):
        find_ct(tmp_path / "nowhere")
    with pytest.raises(IndexError, match=r"`index` must be in \[0, 3\)"):
        next(s for s in inv.sources if s.kind == "nifti").read_slice(3)


def test_check_output_folder_refuses_files_and_paths_under_them(tmp_path):
    from ldct_sim.io import check_output_folder

    (tmp_path / "a_file").write_text("x")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"  # created later
    with pytest.raises(NotADirectoryError, match=r"a_file' is a file; pass a folder"):
        check_output_folder(tmp_path / "a_file")
    with pytest.raises(NotADirectoryError, match=r"lies under '.*a_file', which is a file"):
        check_output_folder(tmp_path / "a_file" / "out")
    assert not (tmp_path / "new").exists()  # nothing made
