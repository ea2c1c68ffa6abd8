"""A Markdown summary of ``metrics.json`` for people."""

from __future__ import annotations

from pathlib import Path


def format_metric(m) -> str:
    """``value (ci_low-ci_high)`` to 3 decimals; the value alone without an interval; ``n/a`` when missing."""
    if not isinstance(m, dict) or m.get("value") is None:
        return "n/a"
    if m.get("ci_low") is None:
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} ({m['ci_low']:.3f}-{m['ci_high']:.3f})"


def summary_lines(metrics: dict) -> list[str]:
    """The summary as Markdown lines."""
    lines = [
        "# Evaluation summary",
        "",
        f"> {metrics['notice']}",
        "",
        f"- cases: {metrics['n_cases']} in {metrics['n_groups']} patient groups; "
        f"prediction errors left out: {metrics['n_prediction_errors']}; truth cases without prediction: "
        f"{metrics['n_truth_without_prediction']}; predictions without a truth case (another data set, or outside "
        f"the split): {metrics.get('n_predictions_without_truth', 0)}",
        f"- 95% CIs: bootstrap over patient groups, {metrics['bootstrap']['n_boot']} resamples, seed {metrics['bootstrap']['seed']}",
        "",
    ]
    c = metrics.get("classification")
    if c:
        lines += ["## Classification", "", "| metric | value (95% CI) | n |", "|---|---|---|"]
        rows = [("macro AUC", c["macro_auc"])] + [(f"AUC {k.replace('_', ' ')}", v) for k, v in c["auc"].items()]
        rows += [("accuracy", c["accuracy"]), ("balanced accuracy", c["balanced_accuracy"]), ("macro F1", c["macro_f1"])]
        rows += [("ECE", c["calibration"]["ece"]), ("Brier", c["calibration"]["brier"]), ("indeterminate rate", c["indeterminate_rate"])]
        if "subtype_accuracy" in c:
            rows.append(("subtype accuracy (tumours)", c["subtype_accuracy"]))
        if "subtype_balanced_accuracy" in c:
            common = c["subtype_most_common"]
            rows += [("subtype balanced accuracy (tumours)", c["subtype_balanced_accuracy"]),
                     (f"share of the most common subtype ({common['subtype'] or 'none'})", common["share"])]
        lines += [f"| {name} | {format_metric(m)} | {m['n']} |" for name, m in rows]
        lines += ["", "### Operating points", "", "| task | point | sensitivity | specificity | PPV | NPV | F1 |", "|---|---|---|---|---|---|---|"]
        for task, m in c["operating_point"].items():
            lines.append(f"| {task} | model decision | " + " | ".join(format_metric(m[k]) for k in ("sensitivity", "specificity", "ppv", "npv", "f1")) + " |")
        target = c["at_sensitivity"]["target"]
        for task in ("malignant", "tumour_vs_normal"):
            m = c["at_sensitivity"][task]
            threshold = "n/a: no positive case" if m["threshold"] is None else f"{m['threshold']:.3f}"
            lines.append(f"| {task} | sensitivity >= {target} (threshold {threshold}) | " + " | ".join(format_metric(m[k]) for k in ("sensitivity", "specificity", "ppv", "npv", "f1")) + " |")
        cm = c["confusion_matrix"]
        lines += ["", "### Confusion matrix (rows truth, columns prediction)", "", "| | " + " | ".join(cm["labels"]) + " |", "|---" * (len(cm["labels"]) + 1) + "|"]
        lines += [f"| {lab} | " + " | ".join(str(v) for v in row) + " |" for lab, row in zip(cm["labels"], cm["matrix"])]
        lines.append("")
    s = metrics.get("segmentation")
    if s:
        lines += ["## Segmentation (tumour images)", "", "| metric | value (95% CI) | n |", "|---|---|---|"]
        lines += [f"| {k.replace('_', ' ')} | {format_metric(v)} | {v['n']} |" for k, v in s.items() if isinstance(v, dict)]
        lines.append("")
    d = metrics.get("detection")
    if d:
        lines += ["## Detection", "", "| metric | value (95% CI) |", "|---|---|", f"| AP@0.5 | {format_metric(d['ap50'])} |", f"| AP@0.5:0.95 | {format_metric(d['ap50_95'])} |"]
        lines += [f"| FROC sensitivity at {r} FP/image | {format_metric(v)} |" for r, v in d["froc"].items()]
        lines.append("")
    for name, rows in (metrics.get("strata") or {}).items():
        if name == "subtype" and rows and "subtype_recall" in rows[0]:
            lines += ["## By subtype (tumour images)", "", *subtype_table(rows), ""]
            continue
        lines += [f"## By {name.replace('_', ' ')}", "", "| stratum | n | accuracy | tumour sensitivity | AUC tumour | AUC malignant |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['stratum']} | {r['n']} | {format_metric(r['accuracy'])} | {format_metric(r['tumour_sensitivity'])} | {format_metric(r['auc_tumour_vs_normal'])} | {format_metric(r['auc_malignant'])} |" for r in rows]
        lines.append("")
    return lines


def subtype_table(rows: list[dict]) -> list[str]:
    """The subtype strata as a Markdown table: how often each subtype is called a tumour, named right, and its Dice."""
    return ["| subtype | n | called a tumour | right subtype | Dice |", "|---|---|---|---|---|"] + [
        f"| {r['stratum']} | {r['n']} | {format_metric(r.get('tumour_sensitivity'))} | {format_metric(r.get('subtype_recall'))} | "
        f"{format_metric(r.get('dice_mean_tumour'))} |" for r in rows]


def write_summary(metrics: dict, path: Path) -> Path:
    """Write the Markdown summary."""
    path.write_text("\n".join(summary_lines(metrics)) + "\n")
    return path
