"""Preprocessed images cached once, so that training epochs read memory, not files.

The cache holds every case of a manifest as uint8 ``size x size`` grey images and masks, plus
the encoded clinical vectors, in one ``.npz`` keyed by the manifest's content, the size and
the uniform-border crop (``crop_tolerance``: each image, and its mask, cut to the box inside its
flat border before resizing, as :func:`osteolens.inference.analyze.analyze_image` does for a model
whose preprocessing asks for it).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osteolens.data.clinical import encode_clinical
from osteolens.data.manifest import LABELS, SUBTYPES, Manifest, load_manifest
from osteolens.errors import OsteolensError
from osteolens.io.atomic import replaced_atomically
from osteolens.io.images import read_image, read_mask, to_unit_grey
from osteolens.transforms.preprocess import network_box, resize, to_uint8

SUBTYPE_NAMES = tuple(SUBTYPES)


@dataclass
class CachedData:
    """Arrays over all cases of a manifest, in manifest order."""

    case_ids: np.ndarray
    groups: np.ndarray
    images: np.ndarray  # (N, S, S) uint8
    masks: np.ndarray  # (N, S, S) uint8 0/1
    labels: np.ndarray  # (N,) int, -1 unknown
    subtypes: np.ndarray  # (N,) int, -1 none
    clinical: np.ndarray  # (N, C) float32

    def take(self, index: np.ndarray) -> "CachedData":
        return CachedData(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def _one(manifest: Manifest, case, size: int, crop_tolerance: float | None, crop_noisy: bool = False):
    arr, props = read_image(manifest.resolve(case.image))
    unit = to_unit_grey(arr, props)
    x0, y0, x1, y1 = network_box(unit, props.content_box, crop_tolerance, crop_noisy) or (0, 0, unit.shape[1], unit.shape[0])
    grey = to_uint8(resize(unit[y0:y1, x0:x1], size))
    if case.mask:
        m = read_mask(manifest.resolve(case.mask), expected_shape=arr.shape[:2]).astype(np.uint8)
        m = resize(m[y0:y1, x0:x1], size, nearest=True)
    else:
        m = np.zeros((size, size), np.uint8)
    return grey, m


def load_cached(manifest_path: str | Path, size: int, cache_dir: str | Path, progress=None,
                crop_tolerance: float | None = None, crop_noisy: bool = False) -> CachedData:
    """Load (building on first use) the cache of a manifest at ``size``.

    Args:
        manifest_path: the manifest.
        size: square size of the cached images.
        cache_dir: folder of cache files.
        progress: optional ``progress(done, total)`` callback while building.
        crop_tolerance: cut each image and its mask to the box inside a flat border (rows and
            columns spanning at most this much grey, :func:`~osteolens.transforms.preprocess.uniform_border_box`);
            ``None``: keep the whole image.
        crop_noisy: with ``crop_tolerance``, cut noisy borders too (:func:`~osteolens.transforms.preprocess.border_box`).

    Returns:
        The cached arrays.

    Raises:
        OsteolensError: a case cannot be read (run ``osteolens data verify`` first).
    """
    manifest_path = Path(manifest_path)
    manifest = load_manifest(manifest_path)
    key = hashlib.sha256(manifest_path.read_bytes() + str(manifest.root).encode() + f"|{size}|v2".encode()
                         + (b"" if crop_tolerance is None else f"|crop{crop_tolerance!r}".encode())
                         + (b"|noisy" if crop_noisy and crop_tolerance is not None else b"")).hexdigest()[:16]
    cache_dir = Path(cache_dir)
    path = cache_dir / f"cache_{key}_{size}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        return CachedData(**{k: z[k] for k in z.files})
    cases = manifest.cases
    out_img = np.zeros((len(cases), size, size), np.uint8)
    out_mask = np.zeros((len(cases), size, size), np.uint8)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(_one, manifest, c, size, crop_tolerance, crop_noisy) for c in cases]
        for i, fut in enumerate(futures):
            try:
                out_img[i], out_mask[i] = fut.result()
            except OsteolensError as exc:
                raise OsteolensError(f"case {cases[i].case_id}: {exc} (run `osteolens data verify`)") from exc
            if progress:
                progress(i + 1, len(cases))
    clinical = np.stack([encode_clinical(c.age, c.sex, c.region, c.view)[0] for c in cases])
    data = CachedData(
        case_ids=np.array([c.case_id for c in cases]),
        groups=np.array([c.group_id for c in cases]),
        images=out_img,
        masks=out_mask,
        labels=np.array([LABELS.index(c.label) if c.label in LABELS else -1 for c in cases]),
        subtypes=np.array([SUBTYPE_NAMES.index(c.subtype) if c.subtype in SUBTYPES else -1 for c in cases]),
        clinical=clinical.astype(np.float32),
    )
    # runs started together on one manifest (a sweep) build the same cache: each writes its own file
    with replaced_atomically(path) as tmp:
        np.savez(tmp, **{f: getattr(data, f) for f in data.__dataclass_fields__})
    return data
