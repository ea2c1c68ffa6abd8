"""Read every case of a manifest and report every problem with its file.

Never stops at the first problem: each case is read, every finding is recorded as a
:class:`Problem` and the caller decides (``osteolens data verify`` exits non-zero when any
error-level problem is found).

Example:
    >>> from osteolens.data.verify import verify_manifest
    >>> report = verify_manifest("manifest.csv")                 # doctest: +SKIP
    >>> report.ok, len(report.problems)                          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from osteolens.data.manifest import LABELS, SUBTYPES, Case, Manifest, load_manifest
from osteolens.errors import ImageReadError
from osteolens.io.images import mask_from_array, read_image, to_unit_grey

#: Perceptual-hash Hamming distance (of 64 bits) at or under which two images are near-duplicates.
NEAR_DUPLICATE_BITS = 2


@dataclass
class Problem:
    """One thing wrong with one case (or a pair of cases)."""

    case_id: str
    path: str
    kind: str
    message: str
    severity: str = "error"  # "error" or "warning"


@dataclass
class VerifyReport:
    """Everything ``verify_manifest`` found."""

    manifest: str
    n_cases: int
    problems: list[Problem] = field(default_factory=list)
    image_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        """True when no error-level problem was found."""
        return not self.errors

    def counts(self) -> dict[str, int]:
        """Number of problems of each kind."""
        return dict(Counter(p.kind for p in self.problems))

    def to_dict(self) -> dict:
        return {
            "manifest": self.manifest,
            "n_cases": self.n_cases,
            "ok": self.ok,
            "counts": self.counts(),
            "image_sizes": self.image_sizes,
            "problems": [asdict(p) for p in self.problems],
        }


@dataclass
class _CaseResult:
    problems: list[Problem]
    size: str | None = None
    pixel_hash: str | None = None
    phash: int | None = None


def _check_case(manifest: Manifest, case: Case) -> _CaseResult:
    problems: list[Problem] = []
    image_path = manifest.resolve(case.image)
    result = _CaseResult(problems)

    def add(kind, message, path=image_path, severity="error"):
        problems.append(Problem(case.case_id, str(path), kind, message, severity))

    if case.label is not None and case.label not in LABELS:
        add("unknown_label", f"label {case.label!r} is not one of {', '.join(LABELS)}")
    if case.subtype is not None:
        parent = SUBTYPES.get(case.subtype)
        if parent is None:
            add("unknown_label", f"subtype {case.subtype!r} is not a known subtype ({', '.join(SUBTYPES)})")
        elif case.label in LABELS and parent != case.label:
            add("label_conflict", f"subtype {case.subtype!r} is {parent}, but label is {case.label!r}")
    if case.sex is not None and case.sex not in ("M", "F"):
        add("bad_clinical_value", f"sex {case.sex!r} is not M or F")

    image = None
    try:
        arr, props = read_image(image_path)
        image = arr
        result.size = f"{props.shape[1]}x{props.shape[0]}"
        result.pixel_hash, result.phash = _fingerprint(arr, props)
    except ImageReadError as exc:
        kind = "missing_file" if "not found" in exc.problem else "unreadable_image"
        if "truncated" in exc.problem:
            kind = "truncated_image"
        add(kind, exc.problem)

    if case.mask is not None:
        mask_path = manifest.resolve(case.mask)
        try:
            shape = image.shape[:2] if image is not None else None
            raw, mask_props = read_image(mask_path)
            mask = mask_from_array(raw, mask_path, expected_shape=shape, lossy=mask_props.format == "jpeg")
            if (levels := len(np.unique(raw))) > 2:
                add("mask_not_binary", f"mask has {levels} distinct values; expected 0 and one foreground value", mask_path)
            if case.label == "normal" and mask.any():
                add("mask_label_conflict", f"label is normal but the mask has {int(mask.sum())} tumour pixels", mask_path)
            if case.label in ("benign", "malignant") and not mask.any():
                add("empty_tumour_mask", f"label is {case.label} but the mask is empty", mask_path, "warning")
        except ImageReadError as exc:
            if "differs from image size" in exc.problem:
                add("mask_size_mismatch", exc.problem, mask_path)
            elif "not found" in exc.problem:
                add("missing_file", f"mask {exc.problem}", mask_path)
            else:
                add("unreadable_mask", exc.problem, mask_path)
    return result


def _fingerprint(arr: np.ndarray, props) -> tuple[str, int]:
    """sha256 of the stored pixels and the perceptual hash of the image."""
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest(), _phash(to_unit_grey(arr, props))


def _phash(grey: np.ndarray) -> int:
    """64-bit DCT perceptual hash (the imagehash ``phash`` definition) of a [0, 1] image."""
    import imagehash
    from PIL import Image

    img = Image.fromarray((grey * 255).astype(np.uint8))
    bits = imagehash.phash(img, hash_size=8).hash.flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming_bits(hashes: np.ndarray, h) -> np.ndarray:
    """Bits that differ between each 64-bit hash of ``hashes`` (uint64) and ``h``."""
    x = np.bitwise_xor(hashes, np.uint64(h))
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def duplicate_pairs(pixel_hashes: list[str | None], phashes: list[int | None], near_bits: int) -> list[tuple[int, int, int]]:
    """Pairs of cases whose images are identical or nearly so.

    Args:
        pixel_hashes: sha256 of each case's pixels (``None`` when unreadable).
        phashes: 64-bit perceptual hash of each case (``None`` when unreadable).
        near_bits: largest Hamming distance that counts as near-duplicate; negative: exact only.

    Returns:
        ``(i, j, bits)`` with ``i < j``; ``bits == -1`` means identical pixels.
    """
    pairs: list[tuple[int, int, int]] = []
    first_of: dict[str, int] = {}
    exact = set()
    for j, h in enumerate(pixel_hashes):
        if h is None:
            continue
        if h in first_of:
            pairs.append((first_of[h], j, -1))
            exact.add((first_of[h], j))
        else:
            first_of[h] = j
    valid = [i for i, h in enumerate(phashes) if h is not None]
    if near_bits >= 0 and len(valid) > 1:
        hashes = np.array([phashes[i] for i in valid], dtype=np.uint64)
        for a in range(len(valid) - 1):
            dist = hamming_bits(hashes[a + 1:], hashes[a])
            for off in np.nonzero(dist <= near_bits)[0]:
                i, j = valid[a], valid[a + 1 + int(off)]
                same_pixels = pixel_hashes[i] is not None and pixel_hashes[i] == pixel_hashes[j]
                if not same_pixels:
                    pairs.append((i, j, int(dist[off])))
    return pairs


def _duplicate_problems(cases: list[Case], results: list[_CaseResult], paths: list[str], near_bits: int) -> list[Problem]:
    problems: list[Problem] = []
    pairs = duplicate_pairs([r.pixel_hash for r in results], [r.phash for r in results], near_bits)
    for i, j, bits in pairs:
        first, dup = cases[i], cases[j]
        if bits < 0:
            conflict = ""
            if (first.label, first.subtype) != (dup.label, dup.subtype):
                conflict = f"; labels conflict: {first.label}/{first.subtype} vs {dup.label}/{dup.subtype}"
            problems.append(Problem(dup.case_id, paths[j], "duplicate_image",
                                    f"pixels identical to case {first.case_id} ({paths[i]}){conflict}"))
            continue
        same_group = first.group_id == dup.group_id
        problems.append(
            Problem(
                dup.case_id, paths[j], "near_duplicate_image",
                f"perceptual hash within {bits} bit(s) of case {first.case_id} ({paths[i]}); "
                f"{'same group' if same_group else 'different groups: possible leakage across splits'}",
                "warning" if same_group else "error",
            )
        )
    return problems


def image_fingerprints(manifest: Manifest, workers: int = 4, cases: list[Case] | None = None
                       ) -> tuple[list[str | None], list[int | None]]:
    """sha256 of the pixels and perceptual hash of every case's image (``None`` if unreadable).

    ``cases``: only these cases of the manifest (default: all), in their order.
    """

    def one(case: Case):
        try:
            arr, props = read_image(manifest.resolve(case.image))
        except ImageReadError:
            return None, None
        return _fingerprint(arr, props)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        out = list(pool.map(one, manifest.cases if cases is None else cases))
    return [o[0] for o in out], [o[1] for o in out]


def verify_manifest(
    manifest: str | Path | Manifest,
    workers: int = 4,
    near_duplicate_bits: int = NEAR_DUPLICATE_BITS,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Read every case of a manifest and report every problem.

    Checks: malformed rows, duplicate case ids, missing/unreadable/truncated images and masks,
    mask size mismatch, non-binary masks, unknown labels and subtypes, label/subtype/mask
    conflicts, clinical values, duplicate images (identical pixels) and near-duplicates
    (perceptual hash; an error when the two cases are in different groups, since a split would
    then leak one image's twin into another split).

    Args:
        manifest: a manifest path or a loaded manifest.
        workers: threads reading images.
        near_duplicate_bits: Hamming distance for near-duplicates; negative turns the check off.
        progress: called as ``progress(done, total)`` after each case.

    Returns:
        A :class:`VerifyReport`.
    """
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest, strict=False)
    source = str(manifest.source or manifest.root)
    problems = [Problem(f"line {line}", source, "malformed_row", msg) for line, msg in manifest.row_errors]
    seen: dict[str, int] = {}
    for c in manifest.cases:
        if c.case_id in seen:
            problems.append(Problem(c.case_id, source, "duplicate_case_id", f"case id {c.case_id!r} appears more than once"))
        seen[c.case_id] = 1
    cases = manifest.cases
    results: list[_CaseResult] = [None] * len(cases)  # type: ignore[list-item]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(_check_case, manifest, c): i for i, c in enumerate(cases)}
        for done, fut in enumerate(futures, start=1):
            results[futures[fut]] = fut.result()
            if progress:
                progress(done, len(cases))
    for r in results:
        problems.extend(r.problems)
    paths = [str(manifest.resolve(c.image)) for c in cases]
    problems.extend(_duplicate_problems(cases, results, paths, near_duplicate_bits))
    sizes = Counter(r.size for r in results if r.size)
    return VerifyReport(manifest=source, n_cases=len(cases), problems=problems, image_sizes=dict(sizes))
