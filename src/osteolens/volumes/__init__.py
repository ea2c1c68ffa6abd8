"""3-D lesions: measurements (volume, diameters, SUV), multi-modal alignment, the volume report."""
