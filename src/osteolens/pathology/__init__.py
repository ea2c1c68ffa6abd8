"""Histopathology: tissue detection, stain normalisation, tile classification, necrosis rate."""
