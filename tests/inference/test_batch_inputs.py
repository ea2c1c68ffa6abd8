from pathlib import Path

import pytest

from osteolens.errors import ImageReadError, OsteolensError
from osteolens.inference.batch_inputs import clinical_for_inputs, collect_inputs, read_clinical_csv, unique_stems
from osteolens.io.images import sniff_format


def test_repeated_names_get_distinct_stems_without_case():
    files = [Path("a/img.png"), Path("b/img.png"), Path("img_1.png"), Path("c/IMG.dcm"), Path("noext")]
    assert unique_stems(files) == ["img", "img_1", "img_1_1", "IMG_2", "noext"]


def test_clinical_rows_keep_their_line_and_blank_cells_are_missing(tmp_path):
    csv = tmp_path / "clinical.csv"
    csv.write_text("image,age,sex,site\n./a.png, 48 ,F,\nfolder\\b.png,,M,femur\n")
    rows = read_clinical_csv(csv)
    assert list(rows) == ["a.png", "folder/b.png"]
    assert rows["a.png"] == {"image": "./a.png", "age": "48", "sex": "F", "site": None, "_where": "clinical.csv line 2"}
    assert rows["folder/b.png"]["age"] is None and rows["folder/b.png"]["_where"] == "clinical.csv line 3"


@pytest.mark.parametrize("text, message", [
    ("image,age\na.png,30\nb.png,40\n./a.png,50\n", "1 image(s) have more than one row ('a.png' on lines 2, 4)"),
    ("image,age\na.png,30\n ,40\n", "line 3 has no image name"),
    ("name,age\na.png,30\n", "needs an 'image' column; found name, age"),
])
def test_a_clinical_table_that_cannot_say_which_row_is_whose_is_refused(tmp_path, text, message):
    csv = tmp_path / "c.csv"
    csv.write_text(text)
    with pytest.raises(OsteolensError, match=r"c\.csv: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        read_clinical_csv(csv)


def test_rows_match_inputs_by_name_or_by_as_much_path_as_they_give(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "img.png").write_bytes(b"")
    a, b = tmp_path / "a" / "img.png", tmp_path / "b" / "img.png"
    rows = {"img.png": {"age": "30"}, "other.png": {"age": "1"}}
    per_file, unused = clinical_for_inputs([a, b, a], rows)
    assert all("names 2 different inputs" in m for m in per_file) and unused == ["other.png"]
    per_file, unused = clinical_for_inputs([a, a], rows)  # one file given twice (by path and in its folder)
    assert per_file == [{"age": "30"}] * 2
    rows["b/img.png"] = {"age": "70"}
    rows[str(a)] = {"age": "40"}  # an absolute path is the most specific of all
    per_file, unused = clinical_for_inputs([a, b, tmp_path / "c.png"], rows)
    assert per_file == [{"age": "40"}, {"age": "70"}, None]
    assert unused == ["img.png", "other.png"]


def test_folders_follow_linked_folders_once_and_keep_broken_links_as_inputs(btxrd_dir, tmp_path):
    real = tmp_path / "archive"
    real.mkdir()
    (real / "knee.png").write_bytes((btxrd_dir / "images" / "IMG000001.png").read_bytes())
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "linked").symlink_to(real, target_is_directory=True)  # a folder of links to an archive's folders
    (batch / "loop").symlink_to(batch, target_is_directory=True)  # walked once, not forever
    (batch / "gone.png").symlink_to(tmp_path / "moved.png")  # its target was moved away
    left_out = []
    files = collect_inputs([batch], left_out)
    assert [f.relative_to(batch).as_posix() for f in files] == ["gone.png", "linked/knee.png"]
    assert left_out == []
    assert sniff_format(files[1]) == "png"
    with pytest.raises(ImageReadError, match="broken symbolic link: it points to .*moved.png, which does not exist"):
        sniff_format(files[0])
