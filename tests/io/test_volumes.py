import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from osteolens.errors import ImageReadError
from osteolens.io.rtstruct import roi_names, rtstruct_to_mask
from osteolens.io.volumes import read_volume
from tests.conftest import shared


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("patient", ["STS_001", "STS_002", "STS_003"])
@pytest.mark.parametrize("modality", ["CT", "MR_T1", "PET"])
def test_series_and_rtstruct_match_the_nifti_pairs(patient, modality):
    base = shared("sts_ct_mr_pet")
    volume = read_volume(base / "dicom" / patient / modality / "image")
    mask, name = rtstruct_to_mask(base / "dicom" / patient / modality / "mask" / "RS.dcm", volume)
    ref_image = read_volume(base / "nifti" / patient / f"{modality}_image.nii.gz")
    ref_mask = read_volume(base / "nifti" / patient / f"{modality}_mask.nii.gz").array > 0
    assert name == f"GTV_Mass_{modality}"
    assert volume.same_grid(ref_image)
    assert np.allclose(volume.array, ref_image.array, atol=1e-4 * max(1.0, np.abs(ref_image.array).max()))
    assert dice(mask, ref_mask) >= 0.97


def test_ibsi_ct_phantom_dicom_equals_its_nifti():
    base = shared("ibsi") / "ibsi_1_ct_radiomics_phantom"
    volume = read_volume(base / "dicom" / "image")
    assert roi_names(base / "dicom" / "mask" / "DCM_RS_00060.dcm") == ["GTV-1"]
    mask, _ = rtstruct_to_mask(base / "dicom" / "mask" / "DCM_RS_00060.dcm", volume, "GTV-1")
    ref = read_volume(base / "nifti" / "mask" / "mask.nii.gz").array > 0
    assert dice(mask, ref) >= 0.97 and volume.units == "HU"


def test_slice_order_comes_from_positions_not_file_names(tmp_path):
    src = shared("sts_ct_mr_pet") / "dicom" / "STS_002" / "PET" / "image"
    files = sorted(src.iterdir())
    for k, f in enumerate(files):  # reverse the names: the last slice becomes 000.dcm
        shutil.copy(f, tmp_path / f"{len(files) - 1 - k:03d}.dcm")
    (tmp_path / "notes.txt").write_text("not DICOM")
    a, b = read_volume(src), read_volume(tmp_path)
    assert np.array_equal(a.array, b.array) and a.origin == b.origin and b.units == "SUVbw"


def test_missing_slice_several_series_and_bad_rtstruct_are_named_errors(tmp_path):
    src = shared("sts_ct_mr_pet") / "dicom" / "STS_002" / "PET" / "image"
    gap = tmp_path / "gap"
    gap.mkdir()
    for k, f in enumerate(sorted(src.iterdir())):
        if k != 10:
            shutil.copy(f, gap / f.name)
    with pytest.raises(ImageReadError, match="a slice is missing$"):
        read_volume(gap)
    cut = tmp_path / "cut"  # a copy interrupted inside one slice's header: that slice is named
    shutil.copytree(src, cut)
    damaged = sorted(cut.iterdir())[10]
    damaged.write_bytes(damaged.read_bytes()[:900])
    with pytest.raises(ImageReadError, match=rf"a slice is missing; 1 DICOM file\(s\) here have no slice position "
                                             rf"\({damaged.name}\): a damaged slice reads so"):
        read_volume(cut)
    mixed = tmp_path / "mixed"
    shutil.copytree(src, mixed)
    ct = sorted((shared("sts_ct_mr_pet") / "dicom" / "STS_002" / "CT" / "image").iterdir())[0]
    shutil.copy(ct, mixed / "zz_ct.dcm")
    with pytest.raises(ImageReadError, match="2 series in one folder"):
        read_volume(mixed)
    volume = read_volume(src)
    with pytest.raises(ImageReadError, match="not a RTSTRUCT"):
        rtstruct_to_mask(ct, volume)
    rs = shared("sts_ct_mr_pet") / "dicom" / "STS_002" / "PET" / "mask" / "RS.dcm"
    with pytest.raises(ImageReadError, match="no ROI named 'GTV'"):
        rtstruct_to_mask(rs, volume, "GTV")
    other = pydicom.dcmread(rs)
    other.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = "1.2.3"
    other.save_as(tmp_path / "other_frame.dcm")
    with pytest.raises(ImageReadError, match="frame of reference"):
        rtstruct_to_mask(tmp_path / "other_frame.dcm", volume)


def test_a_float_volume_with_nan_voxels_is_refused_by_name(tmp_path):
    image = sitk.ReadImage(str(shared("sts_ct_mr_pet") / "nifti" / "STS_002" / "PET_image.nii.gz"))
    pixels = sitk.GetArrayFromImage(image).astype(np.float32)
    pixels[3, 4, 5] = np.nan
    broken = sitk.GetImageFromArray(pixels)
    broken.CopyInformation(image)
    sitk.WriteImage(broken, str(tmp_path / "pet.mha"))
    with pytest.raises(ImageReadError, match=rf"pet\.mha: 1 of {pixels.size} voxels are not numbers"):
        read_volume(tmp_path / "pet.mha")


def test_a_series_of_bare_datasets_reads_as_the_part10_series(tmp_path):
    """Slices stored without the file meta header (older exporters and archives) make the same volume."""
    from tests.io.test_dicom import _bare_copy

    series = shared("sts_ct_mr_pet") / "dicom" / "STS_001" / "CT" / "image"
    for f in sorted(series.glob("*.dcm")):
        _bare_copy(f, tmp_path / f.stem)
    (tmp_path / "README").write_text("exported slices")  # not DICOM: passed over, as before
    expected, volume = read_volume(series), read_volume(tmp_path)
    assert volume.array.shape == expected.array.shape == (59, 202, 198)
    assert np.array_equal(volume.array, expected.array) and volume.spacing == expected.spacing
    # and its structure set, stored the same way, draws the same mask on it
    contours = series.parent / "mask" / "RS.dcm"
    expected_mask, name = rtstruct_to_mask(contours, expected)
    mask, bare_name = rtstruct_to_mask(_bare_copy(contours, tmp_path / "RS"), volume)
    assert bare_name == name and mask.sum() > 1000 and np.array_equal(mask, expected_mask)
