import pytest

from osteolens.data.manifest import load_manifest
from osteolens.errors import ManifestError


def write(tmp_path, text):
    p = tmp_path / "manifest.csv"
    p.write_text(text)
    return p


def test_missing_required_column_is_named(tmp_path):
    p = write(tmp_path, "case_id,image\na,x.png\n")
    with pytest.raises(ManifestError, match="missing required column.*group_id"):
        load_manifest(p)


def test_bad_age_names_the_line(tmp_path):
    p = write(tmp_path, "case_id,group_id,image,age\na,g1,a.png,34\nb,g2,b.png,340\n")
    with pytest.raises(ManifestError, match="line 3.*age 340.0 is outside"):
        load_manifest(p)
    lenient = load_manifest(p, strict=False)
    assert [c.case_id for c in lenient.cases] == ["a"]
    assert lenient.row_errors[0][0] == 3


def test_unknown_column_refused(tmp_path):
    p = write(tmp_path, "case_id,group_id,image,colour\na,g,a.png,red\n")
    with pytest.raises(ManifestError, match="unknown column.*colour"):
        load_manifest(p)


def test_paths_resolve_against_the_manifest_folder(tmp_path):
    p = write(tmp_path, "case_id,group_id,image,mask,site\na,g,img/a.png,,femur;knee-joint\n")
    m = load_manifest(p)
    case = m.cases[0]
    assert m.resolve(case.image) == tmp_path / "img" / "a.png"
    assert case.mask is None and case.sites == ["femur", "knee-joint"]
