import json

import numpy as np
import pytest

from osteolens.errors import OsteolensError
from osteolens.training.hard_negatives import first_look_negatives, load_negatives


def test_a_models_first_look_on_its_training_split_gives_negatives_that_touch_no_lesion(tiny_model, tmp_path):
    import pandas as pd

    from osteolens.data.manifest import load_manifest
    from osteolens.io.images import read_mask

    out = tmp_path / "negatives.json"
    summary = first_look_negatives(tiny_model, out, lesions=2, image_size=64)
    written = json.loads(out.read_text())
    meta = json.loads((tiny_model / "metadata.json").read_text())
    splits = pd.read_csv(meta["training"]["splits"], dtype=str)
    train = set(splits.case_id[splits.split == "train"])
    assert summary["n_images"] == len(train) == 33 and written["image_size"] == 64 and written["split"] == "train"
    assert 0 < summary["n_negatives"] <= summary["n_components"] <= 2 * 33
    assert set(written["negatives"]) <= train
    manifest = load_manifest(meta["training"]["manifest"])
    for case_id, entry in written["negatives"].items():
        case = manifest.by_id()[case_id]
        for x0, y0, x1, y1 in entry["boxes"]:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            if case.mask:  # the box, taken back to the image's pixels, holds no lesion
                truth = read_mask(manifest.resolve(case.mask))
                sy, sx = truth.shape[0] / 64, truth.shape[1] / 64
                inner = truth[int(y0 * sy) + 1:int(y1 * sy) - 1, int(x0 * sx) + 1:int(x1 * sx) - 1]
                assert not inner.any()
    case_ids = np.array(splits.case_id)
    train_idx = np.flatnonzero(splits.split == "train")
    pairs = load_negatives(out, case_ids, train_idx, 64)
    assert len(pairs) == summary["n_negatives"] and all(i in set(train_idx) for i, _ in pairs)


def test_negatives_for_another_cache_size_or_a_validation_image_are_refused(tmp_path):
    path = tmp_path / "negatives.json"
    ids, train = np.array(["a", "b", "c"]), np.array([0, 1])
    path.write_text(json.dumps({"image_size": 320, "negatives": {"a": {"boxes": [[1, 2, 3, 4]]}}}))
    assert load_negatives(path, ids, train, 320) == [(0, (1.0, 2.0, 3.0, 4.0))]
    with pytest.raises(OsteolensError, match="320-px cache, the refiner's is 640"):
        load_negatives(path, ids, train, 640)
    path.write_text(json.dumps({"image_size": 320, "negatives": {"c": {"boxes": [[1, 2, 3, 4]]}}}))
    with pytest.raises(OsteolensError, match="not on training-split images \\(first: 'c'\\)"):
        load_negatives(path, ids, train, 320)
    path.write_text("{not json")
    with pytest.raises(OsteolensError, match="negatives.json: cannot read"):
        load_negatives(path, ids, train, 320)
