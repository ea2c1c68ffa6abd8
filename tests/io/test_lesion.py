import numpy as np
import pytest
import SimpleITK as sitk

from osteolens.errors import ImageReadError
from osteolens.io.lesion import load_image_and_mask
from tests.conftest import shared


def test_a_volume_mask_drawn_on_another_grid_is_refused_not_measured(tmp_path):
    base = shared("sts_ct_mr_pet") / "nifti" / "STS_002"
    volume, mask = load_image_and_mask(base / "PET_image.nii.gz", base / "PET_mask.nii.gz")
    assert mask.shape == volume.array.shape and mask.sum() > 100
    moved = sitk.ReadImage(str(base / "PET_mask.nii.gz"))
    moved.SetOrigin([o + 20.0 for o in moved.GetOrigin()])  # same shape, 2 cm away
    sitk.WriteImage(moved, str(tmp_path / "moved_mask.nii.gz"))
    with pytest.raises(ImageReadError, match=r"moved_mask\.nii\.gz: the mask's grid differs from the image's .*origin"):
        load_image_and_mask(base / "PET_image.nii.gz", tmp_path / "moved_mask.nii.gz")
    # a 2-D picture has no place in space: its one-slice mask is compared by shape only
    picture = shared("btxrd256") / "images" / "IMG000004.png"
    truth = (sitk.GetArrayFromImage(sitk.ReadImage(str(shared("btxrd256") / "masks" / "IMG000004.png"))) > 0)
    one_slice = sitk.GetImageFromArray(truth[None].astype(np.uint8))
    one_slice.SetOrigin((5.0, 5.0, 5.0))
    sitk.WriteImage(one_slice, str(tmp_path / "slice_mask.nii.gz"))
    _, m = load_image_and_mask(picture, tmp_path / "slice_mask.nii.gz")
    assert (m[0] == truth).all()
