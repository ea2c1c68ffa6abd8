"""Fingerprints of the images a model was trained on, so that it can recognise them later.

The fingerprints are the ones ``osteolens data verify`` and ``osteolens data split`` use to find
duplicates (:func:`osteolens.data.verify.image_fingerprints`): the sha256 of an image's stored pixels
and its 64-bit perceptual hash. An image matches a training image when its pixels are identical, or
when the perceptual hashes differ in at most :data:`~osteolens.data.verify.NEAR_DUPLICATE_BITS` bits,
so a training image renamed, re-saved, re-encoded or resized is still recognised; a different
radiograph of the same patient is not. It guards against the plain mistake (a site's "local" set
that holds public training images), not against a determined one.

Exported models record their training split's fingerprints (``metadata["training"]["image_fingerprints"]``),
and :func:`osteolens.models.recalibrate.recalibrate_on_local_data` refuses to fit a calibration on any
image that matches them.

Example:
    >>> from osteolens.data.fingerprints import training_fingerprints, training_matches
    >>> record = training_fingerprints("work/btxrd/manifest.csv", ["IMG000001", "IMG000002"])  # doctest: +SKIP
    >>> training_matches(record, "work/btxrd/manifest.csv", ["IMG000001", "IMG000003"])       # doctest: +SKIP
    ['IMG000001']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from osteolens.data.manifest import Manifest, load_manifest
from osteolens.data.verify import NEAR_DUPLICATE_BITS, hamming_bits, image_fingerprints

#: how the fingerprints are made and matched, recorded beside them so that a later change of method is told apart
METHOD = ("pixels: sha256 of the stored pixel array, first 16 hex digits; perceptual: 64-bit DCT hash (imagehash "
          f"phash) in 16 hex digits; a match: identical pixels, or perceptual hashes within {NEAR_DUPLICATE_BITS} bits")


def _cases(manifest: str | Path | Manifest, case_ids) -> tuple[Manifest, list]:
    manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    wanted = set(map(str, case_ids))
    return manifest, [c for c in manifest.cases if c.case_id in wanted]


def training_fingerprints(manifest: str | Path | Manifest, case_ids, split: str = "train") -> dict:
    """What a model's metadata records of the images it was trained on: the method and the fingerprints."""
    manifest, cases = _cases(manifest, case_ids)
    pixels, perceptual = image_fingerprints(manifest, cases=cases)
    return {"method": METHOD, "split": split, "n_images": len(cases),
            "pixels": sorted({p[:16] for p in pixels if p is not None}),
            "perceptual": sorted({f"{h:016x}" for h in perceptual if h is not None})}


def training_matches(record: dict, manifest: str | Path | Manifest, case_ids) -> list[str]:
    """The cases among ``case_ids`` whose image matches one of the recorded training images (manifest order)."""
    manifest, cases = _cases(manifest, case_ids)
    pixels, perceptual = image_fingerprints(manifest, cases=cases)
    trained_pixels = set(record["pixels"])
    trained = np.array([int(h, 16) for h in record["perceptual"]], dtype=np.uint64)
    found = []
    for case, p, h in zip(cases, pixels, perceptual):
        near = False
        if h is not None and len(trained):
            near = bool((hamming_bits(trained, h) <= NEAR_DUPLICATE_BITS).any())
        if near or (p is not None and p[:16] in trained_pixels):
            found.append(case.case_id)
    return found
