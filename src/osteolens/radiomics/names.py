"""Names of radiomics features: the engine's (mirp) short names mapped to IBSI-1 names and codes.

Every feature osteolens writes carries the IBSI reference manual's anchor (e.g.
``feat_cm_joint_maximum``), its permanent four-character IBSI code (e.g. ``GYBY``) and the
texture aggregation in the manual's words (e.g. ``3D, averaged``), so results can be compared
with any IBSI-compliant tool. Reference: Zwanenburg A. et al., Radiology 2020;295:328-338, and
the IBSI reference manual (arXiv:1612.07003).

Example:
    >>> ibsi_name("cm_joint_max_d1_3d_avg_fbn_n32")
    IBSIName(anchor='feat_cm_joint_maximum', code='GYBY', title='Joint maximum', aggregation='3D, averaged', discretisation='fbn_n32')
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: mirp short name -> (IBSI anchor, IBSI code, title). IVH fractions carry their percentage in the anchor.
FEATURES: dict[str, tuple[str, str, str]] = {
    "morph_volume": ("feat_morph_volume", "RNU0", "Volume (mesh)"),
    "morph_vol_approx": ("feat_morph_approx_volume", "YEKZ", "Volume (voxel counting)"),
    "morph_area_mesh": ("feat_morph_area", "C0JK", "Surface area (mesh)"),
    "morph_av": ("feat_morph_surface_volume_ratio", "2PR5", "Surface to volume ratio"),
    "morph_comp_1": ("feat_morph_comp_1", "SKGS", "Compactness 1"),
    "morph_comp_2": ("feat_morph_comp_2", "BQWJ", "Compactness 2"),
    "morph_sph_dispr": ("feat_morph_sph_dispr", "KRCK", "Spherical disproportion"),
    "morph_sphericity": ("feat_morph_sphericity", "QCFX", "Sphericity"),
    "morph_asphericity": ("feat_morph_asphericity", "25C7", "Asphericity"),
    "morph_com": ("feat_morph_centre_of_mass_shift", "KLMA", "Centre of mass shift"),
    "morph_integ_int": ("feat_morph_integrated_intensity", "99N0", "Integrated intensity"),
    "morph_diam": ("feat_morph_max_3d_diam", "L0JK", "Maximum 3D diameter"),
    "morph_vol_dens_conv_hull": ("feat_morph_vol_dens_conv_hull", "R3ER", "Volume density (convex hull)"),
    "morph_area_dens_conv_hull": ("feat_morph_area_dens_conv_hull", "7T7F", "Area density (convex hull)"),
    "morph_vol_dens_aabb": ("feat_morph_vol_dens_aabb", "PBX1", "Volume density (axis-aligned bounding box)"),
    "morph_area_dens_aabb": ("feat_morph_area_dens_aab", "R59B", "Area density (axis-aligned bounding box)"),
    "morph_pca_maj_axis": ("feat_morph_pca_major", "TDIC", "Major axis length"),
    "morph_pca_min_axis": ("feat_morph_pca_minor", "P9VJ", "Minor axis length"),
    "morph_pca_least_axis": ("feat_morph_pca_least", "7J51", "Least axis length"),
    "morph_pca_elongation": ("feat_morph_pca_elongation", "Q3CK", "Elongation"),
    "morph_pca_flatness": ("feat_morph_pca_flatness", "N17B", "Flatness"),
    "morph_vol_dens_aee": ("feat_morph_vol_dens_aee", "6BDE", "Volume density (approximate enclosing ellipsoid)"),
    "morph_area_dens_aee": ("feat_morph_area_dens_aee", "RDD2", "Area density (approximate enclosing ellipsoid)"),
    "morph_moran_i": ("feat_morph_moran_i", "N365", "Moran’s I index"),
    "morph_geary_c": ("feat_morph_geary_c", "NPT7", "Geary’s C measure"),
    "loc_peak_loc": ("feat_loc_int_local_peak", "VJGA", "Local intensity peak"),
    "loc_peak_glob": ("feat_loc_int_global_peak", "0F91", "Global intensity peak"),
    "stat_mean": ("feat_stat_mean", "Q4LE", "Mean intensity"),
    "stat_var": ("feat_stat_variance", "ECT3", "Intensity variance"),
    "stat_skew": ("feat_stat_skewness", "KE2A", "Intensity skewness"),
    "stat_kurt": ("feat_stat_kurtosis", "IPH6", "(Excess) intensity kurtosis"),
    "stat_median": ("feat_stat_median", "Y12H", "Median intensity"),
    "stat_min": ("feat_stat_minimum", "1GSF", "Minimum intensity"),
    "stat_p10": ("feat_stat_p10", "QG58", "10th intensity percentile"),
    "stat_p90": ("feat_stat_p90", "8DWT", "90th intensity percentile"),
    "stat_max": ("feat_stat_maximum", "84IY", "Maximum intensity"),
    "stat_iqr": ("feat_stat_iqr", "SALO", "Intensity interquartile range"),
    "stat_range": ("feat_stat_range", "2OJQ", "Intensity range"),
    "stat_mad": ("feat_stat_mean_absolute_dev", "4FUA", "Intensity-based mean absolute deviation"),
    "stat_rmad": ("feat_stat_robust_mean_absolute_dev", "1128", "Intensity-based robust mean absolute deviation"),
    "stat_medad": ("feat_stat_median_absolute_dev", "N72L", "Intensity-based median absolute deviation"),
    "stat_cov": ("feat_stat_coef_of_variation", "7TET", "Intensity-based coefficient of variation"),
    "stat_qcod": ("feat_stat_quartile_coef_dispersion", "9S40", "Intensity-based quartile coefficient of dispersion"),
    "stat_energy": ("feat_stat_energy", "N8CA", "Intensity-based energy"),
    "stat_rms": ("feat_stat_root_mean_square", "5ZWQ", "Root mean square intensity"),
    "ih_mean": ("feat_int_hist_mean", "X6K6", "Mean discretised intensity"),
    "ih_var": ("feat_int_hist_variance", "CH89", "Discretised intensity variance"),
    "ih_skew": ("feat_int_hist_skewness", "88K1", "Discretised intensity skewness"),
    "ih_kurt": ("feat_int_hist_kurtosis", "C3I7", "(Excess) discretised intensity kurtosis"),
    "ih_median": ("feat_int_hist_median", "WIFQ", "Median discretised intensity"),
    "ih_min": ("feat_int_hist_minimum", "1PR8", "Minimum discretised intensity"),
    "ih_p10": ("feat_int_hist_p10", "GPMT", "10th discretised intensity percentile"),
    "ih_p90": ("feat_int_hist_p90", "GPMT", "90th discretised intensity percentile"),
    "ih_max": ("feat_int_hist_maximum", "3NCY", "Maximum discretised intensity"),
    "ih_mode": ("feat_int_hist_mode", "AMMC", "Intensity histogram mode"),
    "ih_iqr": ("feat_int_hist_iqr", "WR0O", "Discretised intensity interquartile range"),
    "ih_range": ("feat_int_hist_range", "5Z3W", "Discretised intensity range"),
    "ih_mad": ("feat_int_hist_mean_absolute_dev", "D2ZX", "Intensity histogram mean absolute deviation"),
    "ih_rmad": ("feat_int_hist_robust_mean_absolute_dev", "WRZB", "Intensity histogram robust mean absolute deviation"),
    "ih_medad": ("feat_int_hist_median_absolute_dev", "4RNL", "Intensity histogram median absolute deviation"),
    "ih_cov": ("feat_int_hist_coef_of_variation", "CWYJ", "Intensity histogram coefficient of variation"),
    "ih_qcod": ("feat_int_quartile_coef_dispersion", "SLWD", "Intensity histogram quartile coefficient of dispersion"),
    "ih_entropy": ("feat_int_hist_entropy", "TLU2", "Discretised intensity entropy"),
    "ih_uniformity": ("feat_int_hist_uniformity", "BJ5W", "Discretised intensity uniformity"),
    "ih_max_grad": ("feat_int_hist_max_gradient", "12CE", "Maximum histogram gradient"),
    "ih_max_grad_g": ("feat_int_hist_max_gradient_intensity", "8E6O", "Maximum histogram gradient intensity"),
    "ih_min_grad": ("feat_int_hist_min_gradient", "VQB3", "Minimum histogram gradient"),
    "ih_min_grad_g": ("feat_int_hist_min_gradient_intensity", "RHQZ", "Minimum histogram gradient intensity"),
    "ivh_v10": ("feat_int_vol_hist_volume_at_intensity_10", "BC2M", "Volume at intensity fraction (10%)"),
    "ivh_v90": ("feat_int_vol_hist_volume_at_intensity_90", "BC2M", "Volume at intensity fraction (90%)"),
    "ivh_i10": ("feat_int_vol_hist_intensity_at_volume_10", "GBPN", "Intensity at volume fraction (10%)"),
    "ivh_i90": ("feat_int_vol_hist_intensity_at_volume_90", "GBPN", "Intensity at volume fraction (90%)"),
    "ivh_v25": ("feat_int_vol_hist_volume_at_intensity_25", "BC2M", "Volume at intensity fraction (25%)"),
    "ivh_i25": ("feat_int_vol_hist_intensity_at_volume_25", "GBPN", "Intensity at volume fraction (25%)"),
    "ivh_v50": ("feat_int_vol_hist_volume_at_intensity_50", "BC2M", "Volume at intensity fraction (50%)"),
    "ivh_i50": ("feat_int_vol_hist_intensity_at_volume_50", "GBPN", "Intensity at volume fraction (50%)"),
    "ivh_v75": ("feat_int_vol_hist_volume_at_intensity_75", "BC2M", "Volume at intensity fraction (75%)"),
    "ivh_i75": ("feat_int_vol_hist_intensity_at_volume_75", "GBPN", "Intensity at volume fraction (75%)"),
    "ivh_diff_v25_v75": ("feat_int_vol_hist_volume_at_intensity_difference_25_75", "DDTU", "Volume fraction difference between intensity fractions (25%-75%)"),
    "ivh_diff_i25_i75": ("feat_int_vol_hist_intensity_at_volume_difference_25_75", "CNV2", "Intensity fraction difference between volume fractions (25%-75%)"),
    "ivh_diff_v10_v90": ("feat_int_vol_hist_volume_at_intensity_difference", "DDTU", "Volume fraction difference between intensity fractions (10%-90%)"),
    "ivh_diff_i10_i90": ("feat_int_vol_hist_intensity_at_volume_difference", "CNV2", "Intensity fraction difference between volume fractions (10%-90%)"),
    "cm_joint_max": ("feat_cm_joint_maximum", "GYBY", "Joint maximum"),
    "cm_joint_avg": ("feat_cm_joint_average", "60VM", "Joint average"),
    "cm_joint_var": ("feat_cm_joint_variance", "UR99", "Joint variance"),
    "cm_joint_entr": ("feat_cm_joint_entropy", "TU9B", "Joint entropy"),
    "cm_diff_avg": ("feat_cm_difference_average", "TF7R", "Difference average"),
    "cm_diff_var": ("feat_cm_difference_variance", "D3YU", "Difference variance"),
    "cm_diff_entr": ("feat_cm_difference_entropy", "NTRS", "Difference entropy"),
    "cm_sum_avg": ("feat_cm_sum_average", "ZGXS", "Sum average"),
    "cm_sum_var": ("feat_cm_sum_variance", "OEEB", "Sum variance"),
    "cm_sum_entr": ("feat_cm_sum_entropy", "P6QZ", "Sum entropy"),
    "cm_energy": ("feat_cm_uniformity", "8ZQL", "Angular second moment"),
    "cm_contrast": ("feat_cm_contrast", "ACUI", "Contrast"),
    "cm_dissimilarity": ("feat_cm_dissimilarity", "8S9J", "Dissimilarity"),
    "cm_inv_diff": ("feat_cm_inverse_difference", "IB1Z", "Inverse difference"),
    "cm_inv_diff_norm": ("feat_cm_inverse_difference_normalised", "NDRX", "Normalised inverse difference"),
    "cm_inv_diff_mom": ("feat_cm_inverse_difference_moment", "WF0Z", "Inverse difference moment"),
    "cm_inv_diff_mom_norm": ("feat_cm_inverse_difference_moment_normalised", "1QCO", "Normalised inverse difference moment"),
    "cm_inv_var": ("feat_cm_inverse_variance", "E8JP", "Inverse variance"),
    "cm_corr": ("feat_cm_correlation", "NI2N", "Correlation"),
    "cm_auto_corr": ("feat_cm_autocorrelation", "QWB0", "Autocorrelation"),
    "cm_clust_tend": ("feat_cm_cluster_tendency", "DG8W", "Cluster tendency"),
    "cm_clust_shade": ("feat_cm_cluster_shade", "7NFM", "Cluster shade"),
    "cm_clust_prom": ("feat_cm_cluster_prominence", "AE86", "Cluster prominence"),
    "cm_info_corr1": ("feat_cm_information_corr_1", "R8DG", "Information correlation 1"),
    "cm_info_corr2": ("feat_cm_information_corr_2", "JN9H", "Information correlation 2"),
    "rlm_sre": ("feat_rlm_short_runs_emphasis", "22OV", "Short runs emphasis"),
    "rlm_lre": ("feat_rlm_long_runs_emphasis", "W4KF", "Long runs emphasis"),
    "rlm_lgre": ("feat_rlm_low_grey_level_run_emphasis", "V3SW", "Low grey level run emphasis"),
    "rlm_hgre": ("feat_rlm_high_grey_level_run_emphasis", "G3QZ", "High grey level run emphasis"),
    "rlm_srlge": ("feat_rlm_short_run_low_grey_level_emphasis", "HTZT", "Short run low grey level emphasis"),
    "rlm_srhge": ("feat_rlm_short_run_high_grey_level_emphasis", "GD3A", "Short run high grey level emphasis"),
    "rlm_lrlge": ("feat_rlm_long_run_low_grey_level_emphasis", "IVPO", "Long run low grey level emphasis"),
    "rlm_lrhge": ("feat_rlm_long_run_high_grey_level_emphasis", "3KUM", "Long run high grey level emphasis"),
    "rlm_glnu": ("feat_rlm_grey_level_non_uniformity", "R5YN", "Grey level non-uniformity"),
    "rlm_glnu_norm": ("feat_rlm_grey_level_non_uniformity_normalised", "OVBL", "Normalised grey level non-uniformity"),
    "rlm_rlnu": ("feat_rlm_run_length_non_uniformity", "W92Y", "Run length non-uniformity"),
    "rlm_rlnu_norm": ("feat_rlm_run_length_non_uniformity_normalised", "IC23", "Normalised run length non-uniformity"),
    "rlm_r_perc": ("feat_rlm_run_percentage", "9ZK5", "Run percentage"),
    "rlm_gl_var": ("feat_rlm_grey_level_variance", "8CE5", "Grey level variance"),
    "rlm_rl_var": ("feat_rlm_run_length_variance", "SXLW", "Run length variance"),
    "rlm_rl_entr": ("feat_rlm_run_entropy", "HJ9O", "Run entropy"),
    "szm_sze": ("feat_szm_small_zone_emphasis", "5QRC", "Small zone emphasis"),
    "szm_lze": ("feat_szm_large_zone_emphasis", "48P8", "Large zone emphasis"),
    "szm_lgze": ("feat_szm_low_grey_level_zone_emphasis", "XMSY", "Low grey level zone emphasis"),
    "szm_hgze": ("feat_szm_high_grey_level_zone_emphasis", "5GN9", "High grey level zone emphasis"),
    "szm_szlge": ("feat_szm_small_zone_low_grey_level_emphasis", "5RAI", "Small zone low grey level emphasis"),
    "szm_szhge": ("feat_szm_small_zone_high_grey_level_emphasis", "HW1V", "Small zone high grey level emphasis"),
    "szm_lzlge": ("feat_szm_large_zone_low_grey_level_emphasis", "YH51", "Large zone low grey level emphasis"),
    "szm_lzhge": ("feat_szm_large_zone_high_grey_level_emphasis", "J17V", "Large zone high grey level emphasis"),
    "szm_glnu": ("feat_szm_grey_level_non_uniformity", "JNSA", "Grey level non-uniformity"),
    "szm_glnu_norm": ("feat_szm_grey_level_non_uniformity_normalised", "Y1RO", "Normalised grey level non-uniformity"),
    "szm_zsnu": ("feat_szm_zone_size_non_uniformity", "4JP3", "Zone size non-uniformity"),
    "szm_zsnu_norm": ("feat_szm_zone_size_non_uniformity_normalised", "VB3A", "Normalised zone size non-uniformity"),
    "szm_z_perc": ("feat_szm_zone_percentage", "P30P", "Zone percentage"),
    "szm_gl_var": ("feat_szm_grey_level_variance", "BYLV", "Grey level variance"),
    "szm_zs_var": ("feat_szm_zone_size_variance", "3NSA", "Zone size variance"),
    "szm_zs_entr": ("feat_szm_zone_size_entropy", "GU8N", "Zone size entropy"),
    "dzm_sde": ("feat_dzm_small_distance_emphasis", "0GBI", "Small distance emphasis"),
    "dzm_lde": ("feat_dzm_large_distance_emphasis", "MB4I", "Large distance emphasis"),
    "dzm_lgze": ("feat_dzm_low_grey_level_zone_emphasis", "S1RA", "Low grey level zone emphasis"),
    "dzm_hgze": ("feat_dzm_high_grey_level_zone_emphasis", "K26C", "High grey level zone emphasis"),
    "dzm_sdlge": ("feat_dzm_small_distance_low_grey_level_emphasis", "RUVG", "Small distance low grey level emphasis"),
    "dzm_sdhge": ("feat_dzm_small_distance_high_grey_level_emphasis", "DKNJ", "Small distance high grey level emphasis"),
    "dzm_ldlge": ("feat_dzm_large_distance_low_grey_level_emphasis", "A7WM", "Large distance low grey level emphasis"),
    "dzm_ldhge": ("feat_dzm_large_distance_high_grey_level_emphasis", "KLTH", "Large distance high grey level emphasis"),
    "dzm_glnu": ("feat_dzm_grey_level_non_uniformity", "VFT7", "Grey level non-uniformity"),
    "dzm_glnu_norm": ("feat_dzm_grey_level_non_uniformity_normalised", "7HP3", "Normalised grey level non-uniformity"),
    "dzm_zdnu": ("feat_dzm_zone_distance_non_uniformity", "V294", "Zone distance non-uniformity"),
    "dzm_zdnu_norm": ("feat_dzm_zone_distance_non_uniformity_normalised", "IATH", "Normalised zone distance non-uniformity"),
    "dzm_z_perc": ("feat_dzm_zone_percentage", "VIWW", "Zone percentage"),
    "dzm_gl_var": ("feat_dzm_grey_level_variance", "QK93", "Grey level variance"),
    "dzm_zd_var": ("feat_dzm_zone_distance_variance", "7WT1", "Zone distance variance"),
    "dzm_zd_entr": ("feat_dzm_zone_distance_entropy", "GBDU", "Zone distance entropy"),
    "ngt_coarseness": ("feat_ngtdm_coarseness", "QCDE", "Coarseness"),
    "ngt_contrast": ("feat_ngtdm_contrast", "65HE", "Contrast"),
    "ngt_busyness": ("feat_ngtdm_busyness", "NQ30", "Busyness"),
    "ngt_complexity": ("feat_ngtdm_complexity", "HDEZ", "Complexity"),
    "ngt_strength": ("feat_ngtdm_strength", "1X9X", "Strength"),
    "ngl_lde": ("feat_ngldm_low_dependence_emphasis", "SODN", "Low dependence emphasis"),
    "ngl_hde": ("feat_ngldm_high_dependence_emphasis", "IMOQ", "High dependence emphasis"),
    "ngl_lgce": ("feat_ngldm_low_grey_level_count_emphasis", "TL9H", "Low grey level count emphasis"),
    "ngl_hgce": ("feat_ngldm_high_grey_level_count_emphasis", "OAE7", "High grey level count emphasis"),
    "ngl_ldlge": ("feat_ngldm_low_dependence_low_grey_level_emphasis", "EQ3F", "Low dependence low grey level emphasis"),
    "ngl_ldhge": ("feat_ngldm_low_dependence_high_grey_level_emphasis", "JA6D", "Low dependence high grey level emphasis"),
    "ngl_hdlge": ("feat_ngldm_high_dependence_low_grey_level_emphasis", "NBZI", "High dependence low grey level emphasis"),
    "ngl_hdhge": ("feat_ngldm_high_dependence_high_grey_level_emphasis", "9QMG", "High dependence high grey level emphasis"),
    "ngl_glnu": ("feat_ngldm_grey_level_non_uniformity", "FP8K", "Grey level non-uniformity"),
    "ngl_glnu_norm": ("feat_ngldm_grey_level_non_uniformity_normalised", "5SPA", "Normalised grey level non-uniformity"),
    "ngl_dcnu": ("feat_ngldm_dependence_count_non_uniformity", "Z87G", "Dependence count non-uniformity"),
    "ngl_dcnu_norm": ("feat_ngldm_normalised_dependence_count_non_uniformity", "OKJI", "Normalised dependence count non-uniformity"),
    "ngl_dc_perc": ("feat_ngldm_dependence_count_percentage", "6XV8", "Dependence count percentage"),
    "ngl_gl_var": ("feat_ngldm_grey_level_variance", "1PFV", "Grey level variance"),
    "ngl_dc_var": ("feat_ngldm_dependence_count_variance", "DNX2", "Dependence count variance"),
    "ngl_dc_entr": ("feat_ngldm_dependence_count_entropy", "FCBV", "Dependence count entropy"),
    "ngl_dc_energy": ("feat_ngldm_dependence_count_energy", "CAS9", "Dependence count energy"),
}

#: mirp's spatial suffix -> the IBSI manual's aggregation name
AGGREGATIONS = {
    "2d_avg": "2D, averaged", "2d_s_mrg": "2D, slice-merged", "2.5d_d_mrg": "2.5D, direction-merged",
    "2.5d_v_mrg": "2.5D, merged", "3d_avg": "3D, averaged", "3d_v_mrg": "3D, merged",
    "2d": "2D", "2.5d": "2.5D", "3d": "3D",
}

#: IBSI feature family of each anchor prefix, in the manual's words
FAMILIES = {
    "feat_morph": "morphology", "feat_loc_int": "local intensity", "feat_stat": "intensity-based statistics",
    "feat_int_hist": "intensity histogram", "feat_int_quartile": "intensity histogram",
    "feat_int_vol_hist": "intensity-volume histogram", "feat_cm": "grey level co-occurrence matrix",
    "feat_rlm": "grey level run length matrix", "feat_szm": "grey level size zone matrix",
    "feat_dzm": "grey level distance zone matrix", "feat_ngtdm": "neighbourhood grey tone difference matrix",
    "feat_ngldm": "neighbouring grey level dependence matrix",
}

_PATTERN = re.compile(
    r"^(?P<base>.*?)(?:_d1)?(?:_a0\.0)?"
    r"(?:_(?P<agg>2d_avg|2d_s_mrg|2\.5d_d_mrg|2\.5d_v_mrg|3d_avg|3d_v_mrg|2d|2\.5d|3d))?"
    r"(?:_(?P<disc>fbs_w[0-9.]+|fbn_n[0-9]+|fbs_w[0-9.]+_fbn_n[0-9]+))?$"
)


class IBSIName(NamedTuple):
    anchor: str
    code: str
    title: str
    aggregation: str
    discretisation: str


def family(anchor: str) -> str:
    """The IBSI family of an anchor (longest matching prefix)."""
    for prefix in sorted(FAMILIES, key=len, reverse=True):
        if anchor.startswith(prefix):
            return FAMILIES[prefix]
    raise KeyError(anchor)


def ibsi_name(column: str) -> IBSIName | None:
    """Map one mirp feature column to its IBSI name, or None for a column that is not a feature."""
    match = _PATTERN.match(column)
    base = match.group("base") if match else column
    if base not in FEATURES:
        base = re.sub(r"_(fbs_w[0-9.]+|fbn_n[0-9]+)", "", base)
        if base not in FEATURES:
            return None
    anchor, code, title = FEATURES[base]
    agg = match.group("agg") if match else None
    return IBSIName(anchor, code, title, AGGREGATIONS.get(agg, "") if agg else "", (match.group("disc") or "") if match else "")
