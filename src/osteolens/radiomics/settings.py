"""Radiomics settings in the IBSI's own terms, validated, with the IBSI-1 configurations as presets.

A settings object says how an image becomes features, in the order the IBSI prescribes:
resampling (spacing, interpolation, ROI partial-volume threshold), re-segmentation (range,
outlier filtering), discretisation (fixed bin size or number), the IVH's own discretisation,
texture aggregation (2D, 2.5D or 3D) and distance. It is stored with every output
(``features.settings.json``) so a number can always be traced to how it was made.

Example:
    >>> s = preset("ibsi-C")
    >>> (s.dimensions, s.new_spacing_mm, s.discretisation, s.bin_width)
    ('3D', [2.0, 2.0, 2.0], 'fixed_bin_size', 25.0)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from osteolens.errors import OsteolensError, validated

DIRECTIONAL_2D = ["2d_average", "2d_slice_merge", "2.5d_direction_merge", "2.5d_volume_merge"]
DIRECTIONAL_3D = ["3d_average", "3d_volume_merge"]
FAMILIES = ["all", "morph", "li", "stat", "ih", "ivh", "cm", "rlm", "szm", "dzm", "ngtdm", "ngldm"]


class RadiomicsSettings(BaseModel):
    """How features are computed; field names follow the IBSI reference manual's chapter 2."""

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    dimensions: Literal["2D", "3D"] = "3D"
    """2D: texture matrices per slice (reported as 2D and 2.5D aggregations); 3D: over the volume."""
    modality: Literal["ct", "mr", "pet", "generic"] = "generic"
    """ct rounds resampled intensities to integers (HU), as the IBSI does for CT."""
    new_spacing_mm: list[float] | None = None
    """Resampled voxel spacing: [x, y] in-plane for 2D, [x, y, z] for 3D; None keeps the image's grid."""
    interpolation_order: Literal[0, 1, 3] = 1
    """0 nearest, 1 (tri)linear, 3 cubic spline."""
    roi_partial_volume: float = 0.5
    """A resampled ROI voxel belongs to the ROI when its interpolated mask value is at least this."""
    resegmentation_range: list[float | None] | None = None
    """[low, high] intensity range kept in the intensity mask; None for no range."""
    resegmentation_sigma: float | None = None
    """Outlier filtering: drop intensities beyond mean +/- sigma * SD (3 in the IBSI)."""
    discretisation: Literal["fixed_bin_size", "fixed_bin_number", "none"] = "fixed_bin_number"
    bin_width: float | None = None
    n_bins: int | None = 32
    ivh_discretisation: Literal["none", "fixed_bin_size", "fixed_bin_number"] = "none"
    ivh_bin_width: float | None = None
    ivh_n_bins: int | None = None
    distance: float = 1.0
    families: list[str] = ["all"]
    """IBSI families: morph, li, stat, ih, ivh, cm, rlm, szm, dzm, ngtdm, ngldm, or all."""
    texture_aggregations: list[str] | None = None
    """Directional aggregations for GLCM/GLRLM (mirp's names); the default is every one the dimensions allow."""

    @model_validator(mode="after")
    def _consistent(self):
        if self.discretisation == "fixed_bin_size" and not self.bin_width:
            raise ValueError("fixed_bin_size discretisation needs bin_width")
        if self.discretisation == "fixed_bin_number" and not self.n_bins:
            raise ValueError("fixed_bin_number discretisation needs n_bins")
        if self.ivh_discretisation == "fixed_bin_size" and not self.ivh_bin_width:
            raise ValueError("fixed_bin_size IVH discretisation needs ivh_bin_width")
        if self.ivh_discretisation == "fixed_bin_number" and not self.ivh_n_bins:
            raise ValueError("fixed_bin_number IVH discretisation needs ivh_n_bins")
        if self.new_spacing_mm is not None:
            need = 2 if self.dimensions == "2D" else 3
            if len(self.new_spacing_mm) != need or min(self.new_spacing_mm) <= 0:
                raise ValueError(f"new_spacing_mm must be {need} positive values for {self.dimensions}")
        if self.resegmentation_range is not None and len(self.resegmentation_range) != 2:
            raise ValueError("resegmentation_range must be [low, high] (null for an open end)")
        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown feature families {sorted(unknown)}; choose from {FAMILIES}")
        allowed = DIRECTIONAL_2D if self.dimensions == "2D" else DIRECTIONAL_3D
        if self.texture_aggregations is not None and not set(self.texture_aggregations) <= set(allowed):
            raise ValueError(f"texture_aggregations for {self.dimensions} must be among {allowed}")
        return self

    def to_mirp(self) -> dict:
        """The keyword arguments of ``mirp.extract_features`` that implement these settings."""
        by_slice = self.dimensions == "2D"
        directional = self.texture_aggregations or (DIRECTIONAL_2D if by_slice else DIRECTIONAL_3D)
        omni = sorted({m.split("_")[0] for m in directional})
        kw = dict(
            image_modality=None if self.modality == "generic" else self.modality, by_slice=by_slice, base_feature_families=self.families,
            anti_aliasing=False, base_discretisation_method=self.discretisation,
            ivh_discretisation_method=self.ivh_discretisation,
            glcm_distance=float(self.distance), ngldm_distance=float(self.distance),
            glcm_spatial_method=directional, glrlm_spatial_method=directional,
            glszm_spatial_method=omni, gldzm_spatial_method=omni, ngtdm_spatial_method=omni, ngldm_spatial_method=omni,
        )
        if self.new_spacing_mm is not None:
            # mirp takes in-plane spacing for slice-wise work and (z, y, x) for volumes
            sp = self.new_spacing_mm
            kw.update(new_spacing=[sp[1], sp[0]] if by_slice else [sp[2], sp[1], sp[0]],
                      spline_order=self.interpolation_order, roi_spline_order=1,
                      roi_interpolation_mask_inclusion_threshold=self.roi_partial_volume)
        if self.resegmentation_range is not None:
            low, high = self.resegmentation_range
            # mirp reads NaN as an open end
            kw["resegmentation_intensity_range"] = [float("nan") if low is None else float(low),
                                                    float("nan") if high is None else float(high)]
        if self.resegmentation_sigma is not None:
            kw["resegmentation_sigma"] = float(self.resegmentation_sigma)
        if self.discretisation == "fixed_bin_size":
            kw["base_discretisation_bin_width"] = float(self.bin_width)
        elif self.discretisation == "fixed_bin_number":
            kw["base_discretisation_n_bins"] = int(self.n_bins)
        if self.ivh_discretisation == "fixed_bin_size":
            kw["ivh_discretisation_bin_width"] = float(self.ivh_bin_width)
        elif self.ivh_discretisation == "fixed_bin_number":
            kw["ivh_discretisation_n_bins"] = int(self.ivh_n_bins)
        return kw


_IBSI_COMMON = dict(modality="ct", families=["all"])

PRESETS: dict[str, dict] = {
    # IBSI-1 reference configurations (reference manual, chapter 5; ../shared/data/ibsi)
    "ibsi-digital-phantom": dict(dimensions="3D", modality="ct", discretisation="none", n_bins=None),
    "ibsi-digital-phantom-2d": dict(dimensions="2D", modality="ct", discretisation="none", n_bins=None,
                                    families=["cm", "rlm", "szm", "dzm", "ngtdm", "ngldm"]),
    "ibsi-A": dict(**_IBSI_COMMON, dimensions="2D", resegmentation_range=[-500, 400],
                   discretisation="fixed_bin_size", bin_width=25.0, n_bins=None),
    "ibsi-B": dict(**_IBSI_COMMON, dimensions="2D", new_spacing_mm=[2.0, 2.0], interpolation_order=1,
                   resegmentation_range=[-500, 400], discretisation="fixed_bin_number", n_bins=32),
    "ibsi-C": dict(**_IBSI_COMMON, dimensions="3D", new_spacing_mm=[2.0, 2.0, 2.0], interpolation_order=1,
                   resegmentation_range=[-1000, 400], discretisation="fixed_bin_size", bin_width=25.0, n_bins=None,
                   ivh_discretisation="fixed_bin_size", ivh_bin_width=2.5),
    "ibsi-D": dict(**_IBSI_COMMON, dimensions="3D", new_spacing_mm=[2.0, 2.0, 2.0], interpolation_order=1,
                   resegmentation_sigma=3.0, discretisation="fixed_bin_number", n_bins=32),
    "ibsi-E": dict(**_IBSI_COMMON, dimensions="3D", new_spacing_mm=[2.0, 2.0, 2.0], interpolation_order=3,
                   resegmentation_range=[-1000, 400], resegmentation_sigma=3.0, discretisation="fixed_bin_number",
                   n_bins=32, ivh_discretisation="fixed_bin_number", ivh_n_bins=1000),
    # everyday defaults
    "radiograph": dict(dimensions="2D", modality="generic", discretisation="fixed_bin_number", n_bins=32,
                       texture_aggregations=["2d_average", "2d_slice_merge"]),
    "ct": dict(dimensions="3D", modality="ct", new_spacing_mm=[1.0, 1.0, 1.0], resegmentation_range=[-1000, 3000],
               discretisation="fixed_bin_size", bin_width=25.0, n_bins=None),
    "mr": dict(dimensions="3D", modality="mr", new_spacing_mm=[1.0, 1.0, 1.0], resegmentation_sigma=3.0,
               discretisation="fixed_bin_number", n_bins=32),
    "pet": dict(dimensions="3D", modality="pet", new_spacing_mm=[3.0, 3.0, 3.0], resegmentation_range=[0, None],
                discretisation="fixed_bin_size", bin_width=0.25, n_bins=None),
}


def preset(name: str) -> RadiomicsSettings:
    """One of :data:`PRESETS` by name."""
    if name not in PRESETS:
        raise OsteolensError(f"unknown radiomics preset {name!r}; choose one of {', '.join(PRESETS)}")
    return RadiomicsSettings(name=name, **PRESETS[name])


def load_settings(source: str | Path | None, default: str = "radiograph") -> RadiomicsSettings:
    """Settings from a preset name, a JSON file, or the default preset when None."""
    if source is None:
        return preset(default)
    if str(source) in PRESETS:
        return preset(str(source))
    path = Path(source)
    if not path.is_file():
        raise OsteolensError(f"{path}: no such radiomics settings file (or preset: {', '.join(PRESETS)})")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise OsteolensError(f"{path}: invalid radiomics settings: not valid JSON ({exc})") from exc
    return validated(RadiomicsSettings, raw, str(path), "radiomics settings")
