import pytest

from osteolens.errors import ManifestError, OsteolensError
from osteolens.io.tables import read_text_table


def test_cells_stay_text_and_empty_cells_stay_empty(tmp_path):
    (tmp_path / "t.csv").write_text("image,age,sex\na.png,007,\nb.png,NA,F\n")
    t = read_text_table(tmp_path / "t.csv", "clinical data")
    assert t.to_dict(orient="records") == [{"image": "a.png", "age": "007", "sex": ""},
                                           {"image": "b.png", "age": "NA", "sex": "F"}]


@pytest.mark.parametrize("content, problem", [
    (b"", "EmptyDataError"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "UnicodeDecodeError"),
    (b'a,b\n1,"2\n', "ParserError"),
])
def test_a_file_that_is_not_csv_is_named_with_its_problem(tmp_path, content, problem):
    (tmp_path / "t.csv").write_bytes(content)
    with pytest.raises(ManifestError, match=rf"t\.csv: not a readable CSV manifest \({problem}"):
        read_text_table(tmp_path / "t.csv", "manifest", ManifestError)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(OsteolensError, match=r"gone\.csv: labels file not found"):
        read_text_table(tmp_path / "gone.csv", "labels")
