"""A self-contained HTML page for a batch of analyses (images embedded, no external files)."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from osteolens import RESEARCH_NOTICE, __version__


THUMBNAIL_SIDE = 384  # px, the longest side of a report's pictures


def report_thumbnail(rgb: np.ndarray, max_side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """An overlay shrunk to the size a report shows it (aspect ratio kept; never enlarged).

    >>> report_thumbnail(np.zeros((3000, 2500, 3), np.uint8)).shape
    (384, 320, 3)
    """
    from PIL import Image

    im = Image.fromarray(rgb)
    im.thumbnail((max_side, max_side))
    return np.asarray(im)


def _png_base64(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode()


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def lesion_size_text(r) -> str:
    """The largest lesion's axes as a report shows them: in mm where the image has a pixel spacing,
    and how many lesions there are when there are several.

    >>> from types import SimpleNamespace as NS
    >>> lesion_size_text(NS(lesion_long_axis_px=120.4, lesion_short_axis_px=45.0, lesion_long_axis_mm=None,
    ...                     lesion_short_axis_mm=None, lesions=[{}]))
    '120 x 45 px (no pixel spacing)'
    >>> lesion_size_text(NS(lesion_long_axis_px=120.4, lesion_short_axis_px=45.0, lesion_long_axis_mm=48.2,
    ...                     lesion_short_axis_mm=18.0, lesions=[{}, {}, {}]))
    '48.2 x 18.0 mm; the largest of 3 lesions'
    >>> lesion_size_text(NS(lesion_long_axis_px=None, lesion_short_axis_px=None, lesion_long_axis_mm=None, lesions=[]))
    '-'
    """
    if r.lesion_long_axis_px is None:
        return "-"
    text = axes_text(r.lesion_long_axis_px, r.lesion_short_axis_px, r.lesion_long_axis_mm, r.lesion_short_axis_mm)
    n = len(r.lesions)
    return text + (f"; the largest of {n} lesions" if n > 1 else "")


NO_OUTLINE = ("none outlined: no part of the tumour mask reached its threshold; the heat map shows where the class "
              "evidence lies")


def boxes_text(r) -> str:
    """The boxes as a report lists them; a tumour call (or an indeterminate one) with no lesion outlined says so.

    >>> from types import SimpleNamespace as NS
    >>> boxes_text(NS(boxes=[[1, 2, 30, 40], [5, 5, 9, 9]], label="benign"))
    '1 2 30 40; 5 5 9 9'
    >>> boxes_text(NS(boxes=[], label="normal")), boxes_text(NS(boxes=[], label="malignant")) == NO_OUTLINE
    ('-', True)
    """
    if r.boxes:
        return "; ".join(" ".join(map(str, b)) for b in r.boxes)
    return "-" if r.label == "normal" else NO_OUTLINE


def axes_text(long_px: float, short_px: float, long_mm: float | None = None, short_mm: float | None = None) -> str:
    """A lesion's long x short axis, in mm when known.

    >>> axes_text(120.4, 45.0), axes_text(120.4, 45.0, 48.16, 18.0)
    ('120 x 45 px (no pixel spacing)', '48.2 x 18.0 mm')
    """
    if long_mm is not None:
        return f"{long_mm:.1f} x {short_mm:.1f} mm"
    return f"{long_px:.0f} x {short_px:.0f} px (no pixel spacing)"


def clinical_text(r) -> str:
    """The clinical values the model read, each with its source on hover, and those it lacked (HTML).

    >>> class R: clinical = {"age": {"value": 52.0, "from": "DICOM Patient's Age '052Y'"}}; clinical_missing = ["view"]
    >>> clinical_text(R)
    '<span title="DICOM Patient&#x27;s Age &#x27;052Y&#x27;">age 52</span>; not given: view'
    """
    e = html.escape
    given = [f"<span title=\"{e(v['from'])}\">{e(k)} {e(format(v['value'], 'g') if isinstance(v['value'], float) else str(v['value']))}</span>"
             for k, v in r.clinical.items()]
    if r.clinical_missing:
        given.append(f"not given: {e(', '.join(r.clinical_missing))}")
    return "; ".join(given) or "-"


def decision_html(label: str) -> str:
    """A label as the report shows it; ``indeterminate`` says to refer.

    >>> decision_html("benign"), decision_html("indeterminate")
    ('<b>benign</b>', "<b class='refer'>Indeterminate: refer to a specialist</b>")
    """
    return "<b class='refer'>Indeterminate: refer to a specialist</b>" if label == "indeterminate" \
        else f"<b>{html.escape(label)}</b>"


def studies_table(studies: list) -> str:
    """The report's table of study readings (:class:`~osteolens.inference.study.StudyReading`); empty without any."""
    if not studies:
        return ""
    from osteolens.inference.study import COMBINE_RULE

    e = html.escape
    rows = []
    for s in studies:
        not_analysed = f"not analysed: {e(', '.join(s.failed))}"
        if s.status != "ok":
            rows.append(f"<tr class='err'><td>{e(s.title)}</td><td class='refer'>{not_analysed}</td>"
                        f"<td colspan='4'>{e(s.error)}</td></tr>")
            continue
        failed = f"<br><span class='refer'>{not_analysed}</span>" if s.failed else ""
        sub = f"{e(s.subtype)} ({_pct(s.p_subtype)})" if s.subtype else "-"
        rows.append(f"<tr><td>{e(s.title)}</td><td>{e(', '.join(s.images))}{failed}</td><td>{decision_html(s.label)}</td>"
                    f"<td>{_pct(s.p_normal)} / {_pct(s.p_benign)} / {_pct(s.p_malignant)}</td><td>{sub}</td>"
                    f"<td>{e(', '.join(s.with_lesion)) or '-'}</td></tr>")
    return (f"<h2>Studies: each study's views read together</h2><p>Probabilities: the {e(COMBINE_RULE)}; "
            "the decision follows the same rule as for one image. Views of another body part or side (a comparison "
            "film, another bone) are read apart.</p><table class='studies'><tr><th>study</th><th>images</th>"
            "<th>decision</th><th>p(normal) / p(benign) / p(malignant)</th><th>likely subtype</th>"
            f"<th>images with a lesion drawn</th></tr>{''.join(rows)}</table><h2>Images</h2>")


def write_batch_report(results: list, model, path: Path, overlays: bool = True, studies: list | None = None) -> Path:
    """Write ``report.html`` for a batch: notice, model, the study readings (``studies``, where images
    name their study), one card per image (with its :func:`report_thumbnail`, ``Analysis.thumbnail``,
    when ``overlays``), errors."""
    e = html.escape
    ok = [r for r in results if r.status == "ok"]
    cards = []
    for r in results:
        if r.status != "ok":
            cards.append(f"<div class='card err'><h3>{e(r.image)}</h3><p><b>Could not be analysed:</b> {e(r.error)}</p></div>")
            continue
        img = ""
        if overlays and r.thumbnail is not None:
            img = f"<img alt='overlay of {e(r.image)}' src='data:image/png;base64,{_png_base64(r.thumbnail)}'>"
        decision = decision_html(r.label)
        area = f"{r.lesion_area_px} px" + (f" ({r.lesion_area_mm2:.1f} mm&sup2;)" if r.lesion_area_mm2 is not None else " (no pixel spacing)")
        sub = f"{e(r.subtype)} ({_pct(r.p_subtype)})" if r.subtype else "-"
        size = lesion_size_text(r)
        cards.append(
            f"<div class='card'><h3>{e(r.image)}</h3>{img}<table>"
            f"<tr><td>decision</td><td>{decision}</td></tr>"
            f"<tr><td>p(normal) / p(benign) / p(malignant)</td><td>{_pct(r.p_normal)} / {_pct(r.p_benign)} / {_pct(r.p_malignant)}</td></tr>"
            f"<tr><td>likely subtype (of the likelier tumour class)</td><td>{sub}</td></tr>"
            f"<tr><td>uncertainty (0-1)</td><td>{r.uncertainty:.3f}</td></tr>"
            f"<tr><td>lesion area</td><td>{area}</td></tr>"
            f"<tr><td>largest lesion, long x short axis</td><td>{size}</td></tr>"
            f"<tr><td>boxes (x0 y0 x1 y1)</td><td>{e(boxes_text(r))}</td></tr>"
            f"<tr><td>clinical inputs</td><td>{clinical_text(r)}</td></tr>"
            + (f"<tr><td>study</td><td>{e(r.study)}</td></tr>" if r.study else "")
            + (f"<tr><td>not written</td><td class='refer'>{e(r.error)}</td></tr>" if r.error else "")
            + "</table></div>"
        )
    meta = model.metadata
    cal = meta["calibration"]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>osteolens report</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}} .notice{{background:#fff3cd;border:1px solid #e0c060;padding:.6em}}
.grid{{display:flex;flex-wrap:wrap;gap:1em}} .card{{border:1px solid #ccc;border-radius:6px;padding:.6em;width:400px}}
.card img{{max-width:100%}} .err{{background:#fdecea}} td{{padding:2px 6px;vertical-align:top}} .refer{{color:#b00}}
.studies{{border-collapse:collapse;margin-bottom:1em}} .studies td,.studies th{{border:1px solid #ccc;text-align:left}}
</style></head><body>
<p class="notice"><b>{e(RESEARCH_NOTICE)}</b></p>
<h1>osteolens analysis</h1>
<p>{len(results)} input(s): {len(ok)} analysed, {len(results) - len(ok)} failed. Model <b>{e(meta['name'])}</b> {e(meta['version'])}
(sha256 {e(meta['sha256'][:16])}&hellip;), osteolens {__version__}, {datetime.now(timezone.utc).isoformat(timespec='seconds')}.</p>
<p>Decision rule: indeterminate when uncertainty &gt; {cal['uncertainty_threshold']:.3f}; malignant when p(malignant) &ge;
{cal['malignant_threshold']:.3f} (chosen for sensitivity {cal['malignant_target_sensitivity']:.2f} on validation data); otherwise the more likely of
normal and benign. Heat map: class activation map of the more likely tumour class. Green: tumour outline; red: boxes.</p>
{studies_table(studies or [])}<div class="grid">{''.join(cards)}</div>
<p class="notice">{e(RESEARCH_NOTICE)} Trained on {e(meta['training']['data']['name'])} ({e(meta['training']['data']['licence'])}).</p>
</body></html>
"""
    path.write_text(page)
    return path
