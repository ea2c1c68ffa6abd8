"""Training runs against a reference run, paired on the validation split (never the test split).

Each run folder's ``best.pt`` reads the validation images of its own config (flip-TTA, its own
temperature and mask threshold from ``calibration.json``). An exported model folder (``metadata.json``
and ``model.onnx``, or a registered name) is read the same way through ONNX Runtime, its images
prepared as its metadata says (border crop included), with the calibration in its metadata. Every
run must use the same split. For
each run the script reports macro AUC, tumour-vs-normal and malignant-vs-rest AUC, mean Dice
on tumour images, and the saliency pointing game (the flip-averaged class map of the more likely
tumour class peaking inside the true mask, as ``osteolens analyze`` draws it), each with its
group-bootstrap CI; and its difference from the first run, with the CI of the paired difference
(the same resamples of patient groups for both runs).

This is how a recipe change is judged before anything touches the test split: one run of the
shipped recipe with another seed moves macro AUC by about 0.02 on this split, so a change needs
a paired interval that excludes zero, or two seeds, to count.

Usage:
    python benchmarks/compare_runs.py work/runs/bf16 work/runs/lesionpool work/runs/progressive --tag stop14

Writes benchmarks/results/compare_runs[_TAG].json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from osteolens.data.manifest import load_manifest
from osteolens.evaluation.bootstrap import MetricResult, group_bootstrap_weights, percentile_ci
from osteolens.evaluation.classification import macro_auc, roc_auc
from osteolens.evaluation.segmentation import dice, weighted_mean
from osteolens.errors import OsteolensError
from osteolens.explain.saliency import pointing_game_hit, saliency_map
from osteolens.models.export import load_run
from osteolens.models.recalibrate import predict_onnx, training_data
from osteolens.models.registry import load_model
from osteolens.training import calibration as cal
from osteolens.training.trainer import case_splits, predict_cached, split_indices

REPO = Path(__file__).resolve().parents[1]
METRICS = ("macro_auc", "auc_tumour", "auc_malignant", "dice", "pointing_game")


def _predict(run: Path, device: str, split: str = "val"):
    """``(config, calibration, the split's data, flip-TTA predictions)`` of a run folder or an exported model."""
    if (run / "best.pt").is_file():
        cfg, calib, _, model = load_run(run)
        va = _split_data(cfg, cfg.cached(), split)
        model.to(device)
        return cfg, calib, va, predict_cached(model, va.images, va.clinical if cfg.clinical else None, tta=True)
    loaded = load_model(str(run))
    cfg, data = training_data(loaded.metadata, None, None)
    va = _split_data(cfg, data, split)
    return cfg, loaded.metadata["calibration"], va, predict_onnx(loaded, va.images, va.clinical if loaded.uses_clinical else None)


def _split_data(cfg, data, split: str):
    if split == "val":
        _, val = split_indices(cfg, data.case_ids)  # limit_val honoured, as in training
        return data.take(val)
    index = np.flatnonzero(case_splits(cfg, data.case_ids) == split)
    if len(index) == 0:
        raise OsteolensError(f"{cfg.splits}: no cases in split {split!r}")
    return data.take(index)


def validation_cases(run: Path, device: str = "cpu", split: str = "val") -> dict:
    """Per-case results of one run folder or exported model: labels, groups, probabilities, Dice, pointing hits.

    ``split`` is ``val`` for every comparison here. ``test`` is only for scoring arms fixed in advance on a
    held-out set, such as centres 2 and 3 of a centre split (``benchmarks/device/per_case.py``); never choose
    between recipes on it.
    """
    cfg, calib, va, pred = _predict(Path(run), device, split)
    probs = cal.softmax(pred["class_logits"], calib["temperature"])
    truth = va.masks > 0
    tumour = va.labels > 0
    dices = np.full(len(va.labels), np.nan)
    hits = np.full(len(va.labels), np.nan)
    for i in np.flatnonzero(tumour):
        dices[i] = dice(truth[i], pred["mask_prob"][i] >= calib["mask_threshold"])
        k = 1 + int(probs[i, 2] > probs[i, 1])
        hits[i] = pointing_game_hit(saliency_map(pred["cam"][i, k], truth[i].shape), truth[i])
    group_of = {c.case_id: c.group_id for c in load_manifest(cfg.manifest).cases}
    return {"case_ids": va.case_ids, "groups": np.array([group_of[c] for c in va.case_ids]), "labels": va.labels,
            "probs": probs, "dice": dices, "pointing_game": hits}


def metric_values(cases: dict, weights=None) -> dict:
    """Each metric of :data:`METRICS` for one run, for one weight vector or a ``(B, n)`` matrix of resamples."""
    y, p = cases["labels"], cases["probs"]
    return {
        "macro_auc": macro_auc(y, p, weights),
        "auc_tumour": roc_auc(y > 0, p[:, 1] + p[:, 2], weights),
        "auc_malignant": roc_auc(y == 2, p[:, 2], weights),
        "dice": weighted_mean(cases["dice"], weights),
        "pointing_game": weighted_mean(cases["pointing_game"], weights),
    }


def compare(runs: list[Path], n_boot: int = 2000, seed: int = 0, device: str = "cpu") -> dict:
    """Metrics of every run and paired differences from the first, over the same group resamples."""
    cases = {str(r): validation_cases(r, device) for r in runs}
    ref_name = str(runs[0])
    ref = cases[ref_name]
    for name, c in cases.items():
        if not np.array_equal(c["case_ids"], ref["case_ids"]):
            raise SystemExit(f"{name}: its validation split differs from {ref_name}'s; paired comparison needs the same cases")
    weights = group_bootstrap_weights(ref["groups"], n_boot, seed)
    points = {name: metric_values(c) for name, c in cases.items()}
    boots = {name: metric_values(c, weights) for name, c in cases.items()}
    out = {"reference": ref_name, "n_val": int(len(ref["labels"])), "n_groups": int(len(np.unique(ref["groups"]))),
           "n_tumour": int((ref["labels"] > 0).sum()), "n_boot": n_boot, "runs": {}}
    for name, c in cases.items():
        row = {}
        for m in METRICS:
            n = int(np.isfinite(c[m]).sum()) if m in ("dice", "pointing_game") else len(c["labels"])  # tumour images only
            row[m] = MetricResult(points[name][m], *percentile_ci(boots[name][m]), n).to_dict()
            if name != ref_name:
                lo, hi = percentile_ci(np.asarray(boots[name][m]) - np.asarray(boots[ref_name][m]))
                row[f"{m}_minus_reference"] = {"value": round(float(points[name][m] - points[ref_name][m]), 6),
                                               "ci_low": round(lo, 6), "ci_high": round(hi, 6)}
        out["runs"][name] = row
    return out


def print_table(result: dict) -> None:
    print(f"validation: {result['n_val']} images, {result['n_tumour']} with a tumour, {result['n_groups']} groups; "
          f"reference {result['reference']}")
    print(f"{'run':<28}" + "".join(f"{m:>34}" for m in METRICS))
    for name, row in result["runs"].items():
        cells = []
        for m in METRICS:
            v = row[m]
            cell = f"{v['value']:.3f}"
            d = row.get(f"{m}_minus_reference")
            if d:
                cell += f" {d['value']:+.3f} ({d['ci_low']:+.3f},{d['ci_high']:+.3f})"
            cells.append(f"{cell:>34}")
        print(f"{Path(name).name:<28}" + "".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path,
                    help="run folders or exported model folders (or registered names); the first is the reference")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--tag", default="")
    ap.add_argument("--device", default="cpu", help="where the runs' networks read the images: cpu or cuda")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        result = compare(args.runs, args.n_boot, device=args.device)
    except OsteolensError as exc:  # a run folder with a file missing
        raise SystemExit(str(exc)) from exc
    print_table(result)
    out = REPO / "benchmarks" / "results" / f"compare_runs{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
