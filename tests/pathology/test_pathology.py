import json

import numpy as np
import pytest
from PIL import Image

from osteolens.errors import OsteolensError
from osteolens.models.registry import ModelIntegrityError
from osteolens.pathology.classifier import CLASSES, TileClassifier, load_tile_folder, tile_group
from osteolens.pathology.slide import analyze_slide, default_tile_model
from osteolens.pathology.tissue import pen_mask, tissue_fraction
from tests.conftest import shared


@pytest.fixture(scope="module")
def tiles():
    return load_tile_folder(shared("osteosarcoma_tiles"))


def test_tile_folder_and_groups(tiles):
    paths, labels, groups = tiles
    assert len(paths) == 60 and np.bincount(labels).tolist() == [20, 20, 20]
    assert tile_group("Case-3-A12-16067-9053_104.jpg") == "Case-3-A12"
    assert len(set(groups)) == 26


def test_tissue_detection_on_real_tiles_and_pen(tiles):
    paths, labels, _ = tiles
    tile = np.asarray(Image.open(paths[int(np.flatnonzero(labels == 1)[0])]).convert("RGB"))
    assert 0.3 < tissue_fraction(tile) <= 1.0
    white = np.full((64, 64, 3), 240, np.uint8)
    assert tissue_fraction(white) == 0.0
    ink = white.copy()
    ink[:, :32] = (30, 120, 40)  # green marker
    assert pen_mask(ink)[:, :32].all() and tissue_fraction(ink) == 0.0


def test_shipped_classifier_has_cv_figures_and_is_checked(tmp_path):
    clf = TileClassifier.load(default_tile_model())
    cv = clf.info["cross_validation"]
    assert len(cv) == 3 and all(c["n_groups"] == 26 for c in cv)
    assert all(0.80 <= c["accuracy"]["value"] <= 1.0 for c in cv)
    bad = tmp_path / "tile_classifier.json"
    bad.write_text(default_tile_model().read_text().replace('"intercept": [', '"intercept": [0.5, ', 1))
    bad.with_suffix(".sha256").write_text(default_tile_model().with_suffix(".sha256").read_text())
    with pytest.raises(ModelIntegrityError):
        TileClassifier.load(bad)


def _mosaic(paths, labels, plan, tmp_path):
    """A 1024-px-per-tile mosaic: plan is a list of class names or 'blank'."""
    side = int(np.ceil(np.sqrt(len(plan))))
    canvas = np.full((side * 1024, side * 1024, 3), 245, np.uint8)
    used = {k: 0 for k in CLASSES}
    fractions = []
    for i, what in enumerate(plan):
        y, x = divmod(i, side)
        if what == "blank":
            continue
        k = CLASSES.index(what)
        path = [p for p, lab in zip(paths, labels) if lab == k][used[what]]
        used[what] += 1
        tile = np.asarray(Image.open(path).convert("RGB"))
        canvas[y * 1024:(y + 1) * 1024, x * 1024:(x + 1) * 1024] = tile
        fractions.append((what, tissue_fraction(np.asarray(Image.fromarray(tile).resize((512, 512), Image.BOX)))))
    path = tmp_path / "mosaic.png"
    Image.fromarray(canvas).save(path)
    nec = sum(f for w, f in fractions if w == "necrotic")
    via = sum(f for w, f in fractions if w == "viable")
    return path, nec / (nec + via)


def test_mosaic_slide_necrosis_rate(tiles, tmp_path):
    """End to end over the slide pipeline (tiling, tissue, batches, areas, outputs).

    The mosaic uses the real tiles the shipped classifier was fitted on, so this checks the
    pipeline, not generalisation; the classifier's accuracy is its grouped cross-validation.
    """
    paths, labels, _ = tiles
    plan = ["necrotic"] * 6 + ["viable"] * 3 + ["non_tumor"] * 3 + ["blank"] * 4
    slide, expected = _mosaic(paths, labels, plan, tmp_path)
    out = tmp_path / "out"
    r = analyze_slide(slide, out)
    assert r["n_tiles"] == 16 and r["tile_counts"]["background"] == 4
    assert abs(r["necrosis_rate"] - expected) <= 0.05, (r["necrosis_rate"], expected)
    assert r["responder"] is False  # about 0.67 necrotic
    saved = json.loads((out / "result.json").read_text())
    assert saved["necrosis_rate"] == r["necrosis_rate"] and "research use only" in saved["notice"]
    for name in ("tiles.csv", "tissue_map.png", "report.html"):
        assert (out / name).is_file()
    assert "Necrosis rate" in (out / "report.html").read_text()


def test_bad_slides_fail_without_partial_report(tmp_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((2048, 2048, 3), 250, np.uint8)).save(blank)
    with pytest.raises(OsteolensError, match="no tissue found"):
        analyze_slide(blank, tmp_path / "o1")
    assert not (tmp_path / "o1" / "result.json").exists()
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((2048, 2048), 120, np.uint8)).save(grey)
    with pytest.raises(OsteolensError, match="must be RGB"):
        analyze_slide(grey, tmp_path / "o2")
    text = tmp_path / "slide.svs"
    text.write_text("not a slide")
    with pytest.raises(OsteolensError):
        analyze_slide(text, tmp_path / "o3")
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_cli_pathology_analyze(tiles, tmp_path):
    from typer.testing import CliRunner

    from osteolens.cli import app

    paths, labels, _ = tiles
    slide, _ = _mosaic(paths, labels, ["necrotic", "necrotic", "viable", "blank"], tmp_path)
    r = CliRunner().invoke(app, ["pathology", "analyze", str(slide), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "necrosis rate" in r.output and "research use only" in r.output
    r = CliRunner().invoke(app, ["pathology", "analyze", str(tmp_path / "missing.svs"), "--out", str(tmp_path / "o2")])
    assert r.exit_code != 0


def test_cli_classify_tiles(tiles, tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from osteolens.cli import app

    paths, labels, _ = tiles
    d = tmp_path / "tiles"
    d.mkdir()
    for k in range(3):
        src = paths[int(np.flatnonzero(labels == k)[0])]
        (d / src.name).write_bytes(src.read_bytes())
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(d / "grey.png")
    (d / "note.png").write_text("text")
    r = CliRunner().invoke(app, ["pathology", "classify", str(d), "--out", str(tmp_path / "t.csv")])
    assert r.exit_code == 0, r.output
    t = pd.read_csv(tmp_path / "t.csv", keep_default_na=False).set_index("tile")
    assert len(t) == 5
    assert t.loc["grey.png", "status"] == "error" and "must be RGB" in t.loc["grey.png", "error"]
    assert t.loc["note.png", "status"] == "error"
    ok = t[t.status == "ok"]
    assert set(ok["class"]) <= set(CLASSES) and len(ok) == 3
    assert np.allclose(ok[[f"p_{c}" for c in CLASSES]].astype(float).sum(axis=1), 1.0)
