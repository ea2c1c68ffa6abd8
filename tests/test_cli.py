import pandas as pd
from typer.testing import CliRunner

from osteolens.cli import app
from tests.conftest import shared

runner = CliRunner()


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for name in ("data", "evaluate", "compare", "demo", "research use only"):
        assert name in r.output


def test_import_and_split_real_btxrd(btxrd_dir, tmp_path):
    r = runner.invoke(app, ["data", "import-btxrd", str(btxrd_dir), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "3171 cases in 1095 patient groups" in r.output
    r = runner.invoke(app, ["data", "split", str(tmp_path / "m" / "manifest.csv"), "--out", str(tmp_path / "s.csv"),
                            "--hold-out-centre", "3", "--no-link-duplicates"])
    assert r.exit_code == 0, r.output
    s = pd.read_csv(tmp_path / "s.csv", dtype=str)
    assert (s.loc[s.split == "test", "centre"] == "3").all() and (s.split == "test").sum() == 216


def test_bad_arguments_give_clear_errors(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", "from osteolens.cli import main; main()", "data", "verify", str(tmp_path / "none.csv")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "none.csv: manifest file not found" in r.stderr
    (tmp_path / "taken").write_text("a file where the output folder should go")
    r = subprocess.run([sys.executable, "-c", "from osteolens.cli import main; main()", "analyze",
                        str(shared("btxrd256") / "images" / "IMG000001.png"), "--out", str(tmp_path / "taken")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and f"{tmp_path / 'taken'}/masks: Not a directory" in r.stderr and "Traceback" not in r.stderr
    r = runner.invoke(app, ["analyze", str(shared("btxrd256") / "images" / "IMG000001.png"), "--out", str(tmp_path / "o"),
                            "--model", "no-such-model"])
    assert "unknown model 'no-such-model'" in str(r.exception) and not (tmp_path / "o").exists()  # nothing written
    r = runner.invoke(app, ["data", "split", str(tmp_path / "x.csv"), "--out", "o.csv", "--fractions", "a,b"])
    assert r.exit_code == 2


def test_demo_runs_on_bundled_samples(tmp_path):
    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert r.exit_code == 0, r.output
    assert "imported 8 bundled BTXRD radiographs" in r.output and "problems: none" in r.output
    assert (tmp_path / "demo" / "samples" / "manifest.csv").is_file()


def test_models_lists_the_shipped_models_verified():
    import re

    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # the console may wrap long lines
    assert re.search(r"osteolens-radiograph \d+\.\d+\.\d+ \(float32, \d+\.\d MB\): ", text)
    assert re.search(r"osteolens-radiograph-int8 \d+\.\d+\.\d+ \(int8, \d+\.\d MB\): ", text)
    assert text.count("(verified)") == 2
