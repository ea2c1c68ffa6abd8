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


@pytest.mark.parametrize("encoding, sep", [("utf-8-sig", ","), ("cp1252", ";"), ("utf-16", "\t"), ("utf-8", ";")])
def test_tables_as_spreadsheets_save_them_are_read(tmp_path, encoding, sep):
    """Excel's CSV on Windows (Windows-1252, and semicolons where the decimal mark is a comma), its
    'Unicode text' (UTF-16, tabs) and UTF-8 with a byte-order mark all give the same table."""
    rows = [["image", "age", "sex", "site"], ["fémur_1.png", "48", "F", "hip bone"], ["b.png", "", "M", "tibia, distal"]]
    quoted = [[f'"{v}"' if sep in v or "," in v else v for v in row] for row in rows]
    (tmp_path / "t.csv").write_bytes("\r\n".join(sep.join(r) for r in quoted).encode(encoding))
    t = read_text_table(tmp_path / "t.csv", "clinical data")
    assert t.columns.tolist() == rows[0] and t.values.tolist() == rows[1:]
