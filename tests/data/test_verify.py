import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from osteolens.cli import app
from osteolens.data.verify import verify_manifest


def test_real_btxrd_duplicates_are_found(btxrd_manifest):
    report = verify_manifest(btxrd_manifest)
    counts = report.counts()
    assert report.n_cases == 3171
    assert counts == {"duplicate_image": 20, "near_duplicate_image": 4}
    assert report.image_sizes == {"256x256": 3171}
    conflict = [p for p in report.problems if p.case_id == "IMG003456"]
    assert conflict and "IMG000591" in conflict[0].message and "labels conflict" in conflict[0].message
    assert not report.ok


def _bad_dataset(tmp_path, btxrd_dir):
    d = tmp_path / "bad"
    d.mkdir()
    good = np.asarray(Image.open(btxrd_dir / "images" / "IMG000001.png"))
    Image.fromarray(good).save(d / "good.png")
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(d / "good_mask.png")
    Image.fromarray(good).save(d / "full.jpg", quality=90)
    (d / "trunc.jpg").write_bytes((d / "full.jpg").read_bytes()[:3000])
    (d / "text.png").write_text("hello, I am text")
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(d / "small_mask.png")
    rows = [
        ("c1", "g1", "good.png", "good_mask.png", "normal", ""),
        ("c2", "g2", "missing.png", "", "benign", "osteochondroma"),
        ("c3", "g3", "trunc.jpg", "", "normal", ""),
        ("c4", "g4", "text.png", "", "normal", ""),
        ("c5", "g5", "good.png", "small_mask.png", "benign", "osteochondroma"),
        ("c6", "g6", "full.jpg", "", "tumourish", ""),
        ("c7", "g7", "full.jpg", "", "benign", "osteosarcoma"),
    ]
    pd.DataFrame(rows, columns=["case_id", "group_id", "image", "mask", "label", "subtype"]).to_csv(d / "manifest.csv", index=False)
    return d / "manifest.csv"


def test_every_problem_is_reported_with_its_file(tmp_path, btxrd_dir):
    report = verify_manifest(_bad_dataset(tmp_path, btxrd_dir))
    kinds = {(p.case_id, p.kind) for p in report.problems}
    assert ("c2", "missing_file") in kinds
    assert ("c3", "truncated_image") in kinds
    assert ("c4", "unreadable_image") in kinds
    assert ("c5", "mask_size_mismatch") in kinds
    assert ("c6", "unknown_label") in kinds
    assert ("c7", "label_conflict") in kinds
    assert ("c5", "duplicate_image") in kinds  # c5 reuses c1's image
    text = [p for p in report.problems if p.case_id == "c4"][0]
    assert text.path.endswith("text.png") and "text" in text.message
    assert not report.ok


def test_cli_exit_status(tmp_path, btxrd_dir):
    runner = CliRunner()
    bad = runner.invoke(app, ["data", "verify", str(_bad_dataset(tmp_path, btxrd_dir))])
    assert bad.exit_code == 1
    assert "truncated" in bad.output and "missing.png" in bad.output
    from osteolens.demo import sample_dir
    from osteolens.data.importers import import_btxrd

    good = import_btxrd(sample_dir(), tmp_path / "samples")
    ok = runner.invoke(app, ["data", "verify", str(good.manifest_path), "--json", str(tmp_path / "v.json")])
    assert ok.exit_code == 0, ok.output
    assert '"ok": true' in (tmp_path / "v.json").read_text()
