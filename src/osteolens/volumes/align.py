"""Bring CT, MR and PET of one patient onto one grid.

Series that share a DICOM frame of reference (one scanner session, or a PET/CT) are already in
the same patient coordinates: resampling by physical position aligns them. Series from
different sessions need a registration first: ``register=True`` estimates a rigid transform by
Mattes mutual information (SimpleITK), which is suited to images of different modalities.
Images are resampled linearly, masks by nearest neighbour.

Example:
    >>> ct, pet = read_volume("CT/image"), read_volume("PET/image")   # doctest: +SKIP
    >>> pet_on_ct, _ = resample_to(pet, ct)                            # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from osteolens.io.volumes import Volume


def _rigid_registration(fixed: Volume, moving: Volume):
    import SimpleITK as sitk

    f = sitk.Cast(fixed.to_sitk(), sitk.sitkFloat32)
    m = sitk.Cast(moving.to_sitk(), sitk.sitkFloat32)
    initial = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.2, seed=0)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=200)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    reg.SetInitialTransform(initial, inPlace=False)
    return reg.Execute(f, m)


def resample_to(moving: Volume, reference: Volume, mask: np.ndarray | None = None,
                register: bool = False) -> tuple[Volume, np.ndarray | None]:
    """Resample ``moving`` (and its ``mask``) onto ``reference``'s grid.

    Args:
        moving: the volume to move.
        reference: the grid to land on.
        mask: optional boolean mask on ``moving``'s grid.
        register: estimate a rigid transform first (different frames of reference).

    Returns:
        (moving on the reference grid, mask on the reference grid or None). Voxels outside
        ``moving``'s field of view are 0 (image) / False (mask).
    """
    import SimpleITK as sitk

    transform = _rigid_registration(reference, moving) if register else sitk.Transform(3, sitk.sitkIdentity)
    ref = reference.to_sitk(np.zeros(reference.array.shape, np.uint8))
    img = sitk.Resample(moving.to_sitk(moving.array.astype(np.float32)), ref, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    out = Volume.from_sitk(img, modality=moving.modality, units=moving.units, source=moving.source,
                           meta={**moving.meta, "resampled_to": reference.source, "registered": register})
    out_mask = None
    if mask is not None:
        m = sitk.Resample(moving.to_sitk(mask.astype(np.uint8)), ref, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        out_mask = sitk.GetArrayFromImage(m).astype(bool)
    return out, out_mask
