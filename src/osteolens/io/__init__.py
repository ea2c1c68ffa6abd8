"""Reading images and volumes; writing DICOM objects."""

from osteolens.io.images import ImageProperties, read_image, read_mask, sniff_format, to_unit_grey

__all__ = ["ImageProperties", "read_image", "read_mask", "sniff_format", "to_unit_grey"]
