import json
from pathlib import Path

import pytest

from osteolens.errors import OsteolensError
from osteolens.training.config import TrainConfig, load_config, validate_config, with_changes
from osteolens.training.refiner import RefinerConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.json"))
PLANS = sorted((CONFIG_DIR.parent / "benchmarks" / "plans").glob("*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_validates_and_fits_the_cpu_budget(path):
    kind = RefinerConfig if path.stem.startswith("refiner") else TrainConfig
    cfg = load_config(path, kind)
    assert isinstance(cfg, kind)
    assert cfg.manifest.is_absolute() and cfg.splits.is_absolute() and cfg.max_minutes <= 60


def test_the_baseline_is_the_plain_classifier_the_issue_describes():
    cfg = load_config(CONFIG_DIR / "radiograph_baseline.json")
    assert (cfg.clinical, cfg.mask_weight, cfg.subtype_weight, cfg.freeze_blocks) == (False, 0.0, 0.0, 0)
    assert cfg.max_minutes == 20 and cfg.image_size == 256 and cfg.selection_metric == "macro_auc"
    aug = cfg.augment
    assert aug.hflip == 0.5 and not any((aug.rotate_deg, aug.scale, aug.translate, aug.brightness, aug.contrast,
                                         aug.gamma, aug.clahe))


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.stem)
def test_every_run_of_every_sweep_plan_is_a_valid_config(path):
    """``benchmarks/sweep_radiograph.py`` lays each run's changes over the default config; a typo would
    otherwise surface only inside a training process, on a lent GPU."""
    plan = json.loads(path.read_text())
    default = json.loads((CONFIG_DIR / "radiograph_default.json").read_text())
    base = with_changes(default, plan.get("base", {}))
    assert plan["runs"]
    for name, change in plan["runs"].items():
        cfg = TrainConfig(**with_changes(base, change))
        if "augment" in change:  # the augmentations a run names change; the rest stay the default's
            assert cfg.augment.hflip == TrainConfig(**base).augment.hflip
            assert all(getattr(cfg.augment, k) == v for k, v in change["augment"].items())


def test_a_plan_run_with_an_unknown_field_is_refused_by_name():
    raw = with_changes({"manifest": "m.csv", "splits": "s.csv"}, {"augment": {"jpg": 0.2}, "lr": "fast"})
    with pytest.raises(OsteolensError) as caught:
        validate_config(raw, "plan run 'jpeg'")
    message = str(caught.value)
    assert message.startswith("plan run 'jpeg': invalid config: ")
    assert "lr: Input should be a valid number" in message and "augment.jpg: Extra inputs are not permitted" in message


def test_a_config_file_with_bad_values_is_refused_naming_file_and_field(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"manifest": "m.csv", "splits": "s.csv", "low_res_epochs": -1}))
    with pytest.raises(OsteolensError, match=r"run\.json: invalid config: low_res_epochs: Input should be greater than or equal to 0"):
        load_config(path)
    path.write_text("[1, 2]")
    with pytest.raises(OsteolensError, match=r"run\.json: invalid config: a JSON object of fields is needed, got list"):
        load_config(path)
