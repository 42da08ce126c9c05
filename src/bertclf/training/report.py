"""report.html: one self-contained page about an exported model, written into its folder.

The headline metrics against the TF-IDF baseline, the per-class table, the confusion matrix, the
calibration diagram, the learning curves, the text-length and truncation statistics, and the 20
most confident mistakes of the test split with their words highlighted by the explanation
(inference/explain.py: occlusion through the folder's own serving graph). No script, no CDN, no
external file: the calibration diagram is embedded as a data: URI and the curves are inline SVG,
so the page opens from disk and the server can show it (GET /report) under a policy that runs
nothing. Every text in it is HTML-escaped.
"""

import base64
import html
import logging
from pathlib import Path

import numpy as np

from bertclf.inference.explain import explain
from bertclf.inference.predictor import Predictor

log = logging.getLogger(__name__)
REPORT_FILE = "report.html"
MISTAKES = 20

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
td, th { border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.big { font-size: 1.6rem; font-weight: 600; }
.muted { color: #666; }
.mistake { border-left: 3px solid #d73a49; padding: .25rem .75rem; margin: .75rem 0; }
.word { padding: 0 .1rem; border-radius: 3px; }
svg text { font: 11px system-ui, sans-serif; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _headline(metrics: dict, model_config: dict, multi: bool) -> str:
    base = metrics.get("baseline") or {}
    rows = [("accuracy" if not multi else "subset accuracy", "accuracy"), ("macro-F1", "macro_f1")]
    if multi:
        rows.append(("micro-F1", "micro_f1"))
    cells = "".join(
        f"<tr><td>{name}</td><td class='big'>{_pct(metrics.get(key))}</td><td>{_pct(base.get(key))}</td></tr>"
        for name, key in rows
    )
    refit = metrics.get("refit")
    note = (
        "<p class='muted'>This model was refitted on train + validation + test (--refit all): the numbers are "
        "the split model's, measured before the refit; the mistakes below are the refitted model's on texts it "
        "has seen.</p>"
        if refit
        else ""
    )
    return (
        f"<h2>How good it is</h2><p>{metrics.get('n_test', '?')} test texts, never trained on.</p>"
        f"<table><tr><th></th><th>this model</th><th>TF-IDF + logistic regression</th></tr>{cells}</table>{note}"
    )


def _per_class(metrics: dict) -> str:
    per = metrics.get("per_class") or {}
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_pct(v.get('precision'))}</td><td>{_pct(v.get('recall'))}</td>"
        f"<td>{_pct(v.get('f1-score'))}</td><td>{int(v.get('support', 0))}</td></tr>"
        for name, v in per.items()
        if isinstance(v, dict) and "support" in v and name not in ("macro avg", "weighted avg", "micro avg")
    )
    return (
        "<h2>Per class</h2><table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>test texts</th>"
        f"</tr>{rows}</table>"
    )


def _confusion(metrics: dict, classes: list[str]) -> str:
    matrix = metrics.get("confusion_matrix")
    if not matrix or len(matrix) != len(classes):
        return ""
    top = max(1, max(max(row) for row in matrix))
    head = "".join(f"<th>{_e(c)}</th>" for c in classes)
    body = ""
    for name, row in zip(classes, matrix, strict=True):
        cells = "".join(
            f"<td style='background: rgba(59, 125, 216, {0.7 * value / top:.2f})'>{value}</td>" for value in row
        )
        body += f"<tr><td>{_e(name)}</td>{cells}</tr>"
    return (
        "<h2>Confusion matrix</h2><p class='muted'>Rows: the true label; columns: the model's.</p>"
        f"<table><tr><th>true \\ predicted</th>{head}</tr>{body}</table>"
    )


def _calibration(metrics: dict, folder: Path) -> str:
    calibration = metrics.get("calibration") or {}
    numbers = ""
    if "ece_after" in calibration:
        numbers = (
            f"<p>Expected calibration error on the test split: {calibration.get('ece_before', 0):.3f} as trained, "
            f"{calibration['ece_after']:.3f} as served (temperature {calibration.get('temperature', 1):g}).</p>"
        )
    picture = folder / "reliability_diagram.png"
    image = ""
    if picture.is_file():
        data = base64.b64encode(picture.read_bytes()).decode()
        image = f"<img alt='reliability diagram' width='480' src='data:image/png;base64,{data}'>"
    return f"<h2>Calibration</h2>{numbers}{image}" if numbers or image else ""


WIDTH, HEIGHT, PAD = 320, 160, 28  # one learning-curve chart, in pixels


def _point(i: int, value: float, epochs: int, low: float, span: float) -> str:
    x = PAD + (WIDTH - 2 * PAD) * (i / max(1, epochs - 1))
    y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * ((value - low) / span)
    return f"{x:.1f},{y:.1f}"


def _curves(history: dict) -> str:
    """Inline SVG: loss and accuracy per epoch, training and validation."""
    charts = []
    for title, keys in (("loss", ("loss", "val_loss")), ("accuracy", ("accuracy", "val_accuracy"))):
        series = {k: [float(v) for v in history.get(k) or []] for k in keys if history.get(k)}
        if not series:
            continue
        values = [v for vs in series.values() for v in vs]
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        epochs = max(len(vs) for vs in series.values())
        lines = ""
        for key, colour in zip(keys, ("#3b7dd8", "#d7763a"), strict=True):
            if key in series:
                points = " ".join(_point(i, v, epochs, low, span) for i, v in enumerate(series[key]))
                lines += f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{points}'/>"
        charts.append(
            f"<svg width='{WIDTH}' height='{HEIGHT}' role='img' aria-label='{title} per epoch'>"
            f"<text x='{PAD}' y='14'>{title}: <tspan fill='#3b7dd8'>training</tspan>, "
            f"<tspan fill='#d7763a'>validation</tspan> ({low:.3f}-{high:.3f}, {epochs} epochs)</text>{lines}</svg>"
        )
    return "<h2>Learning curves</h2>" + "".join(charts) if charts else ""


def _lengths(model_config: dict) -> str:
    tokens = (model_config.get("data") or {}).get("train_tokens") or {}
    if not tokens:
        return ""
    return (
        "<h2>Text length</h2><table><tr><th>training texts, in tokens</th><th></th></tr>"
        f"<tr><td>median</td><td>{tokens.get('median')}</td></tr><tr><td>90th percentile</td>"
        f"<td>{tokens.get('p90')}</td></tr><tr><td>longest</td><td>{tokens.get('max')}</td></tr>"
        f"<tr><td>max_seq_len</td><td>{model_config.get('max_seq_len')}</td></tr>"
        f"<tr><td>cut at max_seq_len</td><td>{tokens.get('cut_at_max_seq_len')} "
        f"({_pct(tokens.get('cut_share'))})</td></tr></table>"
    )


def _highlighted(words: list[dict]) -> str:
    top = max([abs(w["weight"]) for w in words] + [1e-6])
    spans = []
    for w in words:
        colour = "46, 160, 67" if w["weight"] >= 0 else "215, 58, 73"
        alpha = 0.6 * min(1.0, abs(w["weight"]) / top)
        spans.append(
            f"<span class='word' title='{w['weight']:+.3f}' style='background: rgba({colour}, {alpha:.2f})'>"
            f"{_e(w['word'])}</span>"
        )
    return " ".join(spans)


def _mistakes(folder: Path, texts: list[str], truth: list[list[str]], multi: bool) -> str:
    """The most confident mistakes of the test split, words highlighted for the label given."""
    predictor = Predictor(folder, precision="fp32", refuse_drift=False)
    rows = predictor.predict_proba(texts)
    classes = list(predictor.classes)
    wrong = []
    for i, row in enumerate(rows):
        if multi:
            thresholds = predictor.thresholds or [0.5] * len(classes)
            given = {c for c, p, t in zip(classes, row, thresholds, strict=True) if p >= t}
            if given != set(truth[i]):
                extra = [p for c, p in zip(classes, row, strict=True) if c in given - set(truth[i])]
                wrong.append((max(extra, default=float(np.max(row))), i))
        elif classes[int(np.argmax(row))] not in truth[i]:
            wrong.append((float(np.max(row)), i))
    wrong.sort(reverse=True)
    chosen = [i for _, i in wrong[:MISTAKES]]
    if not chosen:
        return "<h2>Mistakes</h2><p>None on the test split.</p>"
    explained = explain(predictor, [texts[i] for i in chosen])
    items = "".join(
        f"<div class='mistake'><p><b>said {_e(why.label)}</b> ({why.probability:.3f}), "
        f"<b>is {_e(', '.join(truth[i]))}</b></p><p>{_highlighted(why.words)}</p></div>"
        for i, why in zip(chosen, explained, strict=True)
    )
    return (
        f"<h2>The {len(chosen)} most confident mistakes</h2><p class='muted'>{len(wrong)} of {len(texts)} test "
        "texts are wrong. Green words pushed the model towards the label it gave, red ones away (hover a word "
        f"for its weight).</p>{items}"
    )


def write_report(folder: Path, model_config: dict, metrics: dict, texts: list[str], truth: list[list[str]]) -> Path:
    """Write report.html into the model `folder` (its serving graph, labels and model_config.json
    written already); `texts` and `truth` are the test split's texts and label sets."""
    multi = bool(model_config.get("multi_label"))
    classes = list(model_config.get("classes") or [])
    title = f"{model_config.get('name', folder.name)}"
    sections = [
        _headline(metrics, model_config, multi),
        _per_class(metrics),
        "" if multi else _confusion(metrics, classes),
        _calibration(metrics, folder),
        _curves((model_config.get("training") or {}).get("history") or {}),
        _lengths(model_config),
        _mistakes(folder, texts, truth, multi),
    ]
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1><p class='muted'>base model {_e(model_config.get('base_model'))}, trained "
        f"{_e(model_config.get('created'))}; {len(classes)} labels</p>" + "".join(sections) + "</body></html>\n"
    )
    path = folder / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path
