from pathlib import Path

import pytest

from osteolens.training.config import TrainConfig, load_config
from osteolens.training.refiner import RefinerConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.json"))


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
