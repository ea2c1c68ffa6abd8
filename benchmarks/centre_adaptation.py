"""Does re-estimating batch-norm statistics on a new centre's own, unlabeled images help? (AdaBN; measured, not adopted)

A centre-1 network is adapted to each held-out centre without labels: every ``BatchNorm2d`` forgets its running
statistics and re-estimates them (cumulative average, ``momentum=None``) from the centre's images and their mirror
images, forwarded in batches of 32 with only the batch-norm layers in training mode. Calibration (temperature,
thresholds) is kept from the source model, since nothing labelled is used. Each centre's patient groups are split
in two halves (seed 0); the network adapted on one half scores the other, so no image is scored by a network
adapted on it. The same two-fold adaptation on the source centre's own validation images is the sanity arm.

The result (docs/radiograph_model.md, "Re-estimating batch-norm statistics on the new centre"): adaptation lowers
every AUC, on the external centres and on the source's own validation images, so osteolens has no adapt command.

Usage:
    python benchmarks/centre_adaptation.py --run work/runs/c1_base --model work/models/c1_v160_pp --tag c1_v160

``--run`` is the training run whose ``best.pt`` is the network; ``--model`` the exported model folder of that
network whose preprocessing (border crop) and calibration are used. Writes
benchmarks/results/centre_adaptation_<tag>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from compare_runs import metric_values
from osteolens.data.splits import load_splits
from osteolens.evaluation.bootstrap import group_bootstrap_weights, percentile_ci
from osteolens.evaluation.calibration import expected_calibration_error
from osteolens.evaluation.segmentation import dice
from osteolens.models.export import load_run
from osteolens.models.recalibrate import training_data
from osteolens.training import calibration as cal
from osteolens.training.trainer import predict_cached, to_input

REPO = Path(__file__).resolve().parents[1]
DIFF_METRICS = ("macro_auc", "auc_tumour", "auc_malignant", "dice")


def adapt_batch_norm(net: torch.nn.Module, images_u8: np.ndarray, clinical: np.ndarray | None, seed: int = 0,
                     batch_size: int = 32) -> torch.nn.Module:
    """``net`` with every BatchNorm2d's running statistics re-estimated on the images and their mirror images."""
    net.eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            m.train()
    x = torch.from_numpy(images_u8).float().div_(255).unsqueeze(1)
    x = torch.cat([x, x.flip(-1)])
    c = None if clinical is None else torch.cat([torch.from_numpy(clinical)] * 2)
    order = np.random.default_rng(seed).permutation(len(x))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            b = order[start:start + batch_size]
            if len(b) > 1:  # a batch of one has no variance
                net(to_input(x[b]), None if c is None else c[b])
    return net.eval()


def halves(index: np.ndarray, groups: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``index`` split in two by patient group at random."""
    g = np.unique(groups[index])
    np.random.default_rng(seed).shuffle(g)
    first = np.isin(groups[index], g[: len(g) // 2])
    return index[first], index[~first]


def score_arm(net, state, data, calib, clinical_on, folds, groups, centres) -> dict:
    """Per-case results, unadapted and adapted, of the scored images of ``folds`` (pairs of adapt / score indices)."""
    idx = np.concatenate([s for _, s in folds])

    def predict(index):
        with torch.no_grad():
            return predict_cached(net, data.images[index], data.clinical[index] if clinical_on else None, tta=True)

    net.load_state_dict(state)
    preds = {"unadapted": predict(idx)}
    parts = []
    for a, s in folds:
        net.load_state_dict(state)
        adapt_batch_norm(net, data.images[a], data.clinical[a] if clinical_on else None)
        parts.append(predict(s))
    preds["adapted"] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out = {}
    for name, pred in preds.items():
        d = np.full(len(idx), np.nan)
        for j, i in enumerate(idx):
            if data.labels[i] > 0:
                d[j] = dice(data.masks[i] > 0, pred["mask_prob"][j] >= calib["mask_threshold"])
        out[name] = {"labels": data.labels[idx], "probs": cal.softmax(pred["class_logits"], calib["temperature"]),
                     "dice": d, "pointing_game": np.full(len(idx), np.nan)}
    out["groups"], out["centres"] = groups[idx], centres[idx]
    return out


def summarise(cases: dict, malignant_threshold: float, n_boot: int = 2000) -> dict:
    """Point figures of both arms (all images and each centre) and the paired adapted-minus-unadapted CIs."""
    def figures(c, sel, weights=None):
        cc = {k: v[sel] for k, v in c.items()}
        row = metric_values(cc, weights)
        row.pop("pointing_game")
        if weights is None:
            called = cc["probs"][:, 2] >= malignant_threshold
            y = cc["labels"]
            row["malignant_sensitivity"] = float(called[y == 2].mean()) if (y == 2).any() else None
            row["malignant_specificity"] = float((~called[y != 2]).mean())
            row["ece"] = float(expected_calibration_error(y, cc["probs"]))
        return row

    everything = np.ones(len(cases["groups"]), bool)
    weights = group_bootstrap_weights(cases["groups"], n_boot, 0)
    out = {"n_images": int(len(cases["groups"])), "n_groups": int(len(np.unique(cases["groups"]))), "arms": {}}
    boots = {}
    for arm in ("unadapted", "adapted"):
        row = figures(cases[arm], everything)
        boots[arm] = figures(cases[arm], everything, weights)
        for m in DIFF_METRICS:
            row[f"{m}_ci"] = percentile_ci(np.asarray(boots[arm][m]))
        row["by_centre"] = {c: figures(cases[arm], cases["centres"] == c) for c in np.unique(cases["centres"])}
        out["arms"][arm] = row
    out["adapted_minus_unadapted"] = {
        m: {"value": out["arms"]["adapted"][m] - out["arms"]["unadapted"][m],
            "ci": percentile_ci(np.asarray(boots["adapted"][m]) - np.asarray(boots["unadapted"][m]))}
        for m in DIFF_METRICS}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="training run folder (its best.pt)")
    ap.add_argument("--model", required=True, help="the exported model folder of that network (crop and calibration)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    meta = json.loads((Path(args.model) / "metadata.json").read_text())
    calib = meta["calibration"]
    cfg, data = training_data(meta, None, None)
    _, _, _, net = load_run(args.run)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    table = load_splits(cfg.splits).set_index("case_id").loc[data.case_ids]
    split, centres, groups = (table[c].to_numpy(str) for c in ("split", "centre", "split_group"))

    def two_fold(index):
        a, b = halves(index, groups)
        return [(a, b), (b, a)]

    arms = {"source_validation": two_fold(np.flatnonzero(split == "val")),
            "external_test": [f for c in sorted(set(centres[split == "test"]))
                              for f in two_fold(np.flatnonzero((split == "test") & (centres == c)))]}
    result = {"run": args.run, "model": args.model, "splits": str(cfg.splits),
              "method": "AdaBN: BatchNorm2d running statistics re-estimated (momentum=None) on each centre's images and "
                        "their mirror images, batches of 32; two folds by patient group, each half scored by the network "
                        "adapted on the other; source calibration kept"}
    for name, folds in arms.items():
        result[name] = summarise(score_arm(net, state, data, calib, cfg.clinical, folds, groups, centres),
                                 calib["malignant_threshold"])
        r = result[name]
        print(f"{name}: {r['n_images']} images, {r['n_groups']} groups")
        for m in DIFF_METRICS:
            d = r["adapted_minus_unadapted"][m]
            print(f"  {m:<14} unadapted {r['arms']['unadapted'][m]:.3f}  adapted {r['arms']['adapted'][m]:.3f}  "
                  f"difference {d['value']:+.3f} ({d['ci'][0]:+.3f} to {d['ci'][1]:+.3f})")
    out = REPO / "benchmarks" / "results" / f"centre_adaptation{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
