"""Make every run reviewable in a browser: HTML of the executed notebooks and ``runs/index.html``.

:func:`build_report` renders each finished run's executed notebooks to HTML beside them (nbconvert's
``lab`` template without any script: the pages are static and open offline) and writes
``runs/index.html``: one row per run (time, profile, trigger reasons, decision, champion and
challenger metrics, status, duration; a label-free estimate the run read that was ``unreliable: label shift …``
says so under its decision) linking to that run's notebooks and manifest, and an inline
SVG plot of each model's champion metric over time with promotions and rollbacks marked.

It is incremental: a notebook whose HTML is newer than it is not rendered again, and each run's row
is cached in ``runs/.report-cache.json`` keyed by its manifest's modification time, so rebuilding
the index over hundreds of runs reads only what changed. The index has no JavaScript and no
external resources.

A run whose ``manifest.json`` cannot be read (not JSON, not an object, a field of the wrong type) is
not left out: it is listed as ``damaged``, above the table and in its row, naming the file and what
is wrong, and ``build_report`` logs a warning for it.

>>> rows = [{"run_id": "r1", "model": "m", "time": "2024-01-07", "champion_metric": 0.8, "metric": "roc_auc",
...          "outcome": "bootstrapped", "new_champion_metric": 0.8}]
>>> svg = champion_plot(rows)
>>> svg.startswith("<svg") and "bootstrapped" in svg
True
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .durable import write_atomic as _write_atomic
from .manifest import MANIFEST, ManifestError, RunManifest
from .outputs import Analysis, Validation

__all__ = ["build_report", "render_run", "run_row", "damaged_row", "champion_plot", "ReportResult", "INDEX"]

log = logging.getLogger("retrainlib.report")

INDEX = "index.html"
_CACHE = ".report-cache.json"
_CACHE_VERSION = 3  # 2: rows carry estimate_unreliable; 3: and the shadow's line
_MARKED = {"promoted": "promotion", "bootstrapped": "promotion", "promoted-from-shadow": "promotion",
           "rolled-back": "rollback", "shadow-started": "shadow", "shadow-dropped": "shadow"}

# nbconvert's lab template without require.js, MathJax, mermaid or widget scripts: static and offline
_STATIC_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
"""


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` did."""

    index: Path
    runs: int
    rendered: int
    skipped: int
    seconds: float
    #: one line per run folder whose manifest.json is damaged, naming the file (those runs are listed as ``damaged``)
    damaged: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"index": str(self.index), "runs": self.runs, "rendered": self.rendered,
                "skipped": self.skipped, "seconds": self.seconds, "damaged": list(self.damaged)}


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"retrain-static.html.j2": _STATIC_TEMPLATE})],
                            template_file="retrain-static.html.j2")
    exporter.log = logging.getLogger("retrainlib.report.nbconvert")  # its 'alternative text is missing' notes are noise
    exporter.log.setLevel(logging.ERROR)
    return exporter


def _needs_render(notebook: Path) -> bool:
    target = notebook.with_suffix(".html")
    return not target.exists() or target.stat().st_mtime_ns < notebook.stat().st_mtime_ns


def render_run(run_dir: Path, *, exporter=None, force: bool = False) -> tuple[int, int]:
    """Render a run folder's executed notebooks to ``<step>.html`` beside them; return (rendered, skipped)."""
    import nbformat

    rendered = skipped = 0
    for nb_path in sorted(Path(run_dir).glob("*.ipynb")):
        if not force and not _needs_render(nb_path):
            skipped += 1
            continue
        exporter = exporter or _exporter()
        body, _ = exporter.from_notebook_node(nbformat.read(nb_path, as_version=4))
        _write_atomic(nb_path.with_suffix(".html"), body)
        rendered += 1
    return rendered, skipped


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _step_output(m: RunManifest, kind: type) -> Any:
    """A step's output of a run; ``None`` when it is missing or unreadable (the index shows what it can)."""
    try:
        return m.output(kind)
    except ManifestError:
        return None


def _scores(metrics: dict, who: str) -> dict[str, float]:
    return {k: v for k, v in ((metrics or {}).get(who) or {}).items() if isinstance(v, (int, float))}


def run_row(run_dir: Path) -> dict[str, Any] | None:
    """The index's row for one run folder, from its manifest and step 10's result; None without a manifest.

    A manifest that cannot be read gives a ``damaged`` row (:func:`damaged_row`) saying what is wrong with it.
    """
    try:
        m = RunManifest.load(run_dir)
    except FileNotFoundError:
        return None
    except ManifestError as exc:
        return damaged_row(run_dir, exc.problem)
    return _manifest_row(run_dir, m)


def damaged_row(run_dir: Path, problem: str) -> dict[str, Any]:
    """The row of a run whose manifest cannot be read: its folder, its notebooks, and one line naming the file."""
    line = (f"{run_dir.parent.name}/{run_dir.name}/manifest.json {problem}; expected the JSON object a run writes: "
            "restore the file, or move the run folder out of runs/")
    notebooks = [{"name": nb.stem, "ipynb": nb.name, "html": nb.with_suffix(".html").name, "status": None}
                 for nb in sorted(run_dir.glob("*.ipynb"))]
    return {"run_id": run_dir.name, "folder": run_dir.name, "profile": None, "model": None, "started": None, "as_of": None,
            "time": None, "status": "damaged", "outcome": "damaged", "exit_code": None, "seconds": None, "reasons": [],
            "decision": None, "verdict": [], "champion_before": None, "champion_after": None, "challenger": None,
            "champion_scores": {}, "challenger_scores": {}, "metric": None, "champion_metric": None,
            "estimated_metric": None, "estimated_band": [None, None], "estimate_unreliable": "", "shadow": "",
            "new_champion_metric": None,
            "error": {"step": None, "message": line}, "damaged": line, "warnings": [], "notebooks": notebooks}


def _manifest_row(run_dir: Path, m: RunManifest) -> dict[str, Any]:
    analyze = _step_output(m, Analysis)
    validation = _step_output(m, Validation)
    challenger = _scores(m.metrics, "challenger")
    metric = m.profile.eval_metric
    notebooks = [{"name": step.name, "ipynb": step.notebook, "html": str(Path(step.notebook).with_suffix(".html")),
                  "status": step.status} for step in m.steps if step.notebook and (run_dir / step.notebook).exists()]
    return {
        "run_id": m.run_id,
        "folder": run_dir.name,
        "profile": m.profile.name,
        "model": m.profile.model_name,
        "started": m.started or None,
        "as_of": m.as_of,
        "time": m.as_of or m.started or None,
        "status": m.status,
        "outcome": m.outcome,
        "exit_code": m.exit_code,
        "seconds": m.seconds,
        "reasons": list(m.reasons),
        "decision": analyze and analyze.decision.status,
        "verdict": validation.reasons if validation else [],
        "champion_before": m.champion_before,
        "champion_after": m.champion_after,
        "challenger": m.challenger,
        "champion_scores": _scores(m.metrics, "champion"),
        "challenger_scores": challenger,
        "metric": (analyze and analyze.metric) or metric,
        "champion_metric": analyze and analyze.metric_value,
        "estimated_metric": analyze and analyze.newest_estimate().get("value"),
        "estimated_band": [analyze and analyze.newest_estimate().get("low"), analyze and analyze.newest_estimate().get("high")],
        # ``unreliable: label shift …`` when the newest labels showed a shift the estimator cannot see
        "estimate_unreliable": (analyze and analyze.newest_estimate().get("unreliable")) or "",
        # the shadow on trial beside the champion as step 10 scored it (steps.shadow.shadow_summary's line)
        "shadow": _shadow_line(analyze),
        "new_champion_metric": challenger.get(metric) if m.outcome in ("promoted", "bootstrapped") else None,
        "error": m.error and m.error.to_dict(),
        "warnings": list(m.warnings),
        "notebooks": notebooks,
    }


# ---- the plot ---------------------------------------------------------------------------------
_COLORS = ("#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def _shadow_line(analyze: Analysis | None) -> str:
    if analyze is None or not getattr(analyze, "shadow", None):
        return ""
    from .steps.shadow import shadow_summary

    return shadow_summary(analyze)


def _when(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def champion_plot(rows: Sequence[dict], *, width: int = 760, height: int = 260) -> str:
    """Inline SVG: each model's champion metric per run over time; ▲ promotions, ▼ rollbacks.

    x is the time the run's data reached (``as_of``, else when it started); y is the champion's
    metric measured by step 10, and after a promotion the new champion's validation score.
    """
    points = _plot_points(rows)
    all_pts = [p for s in points.values() for p in s if p[1] == p[1]]
    all_pts += [(p[0], b, p[2], "band") for s in points.values() for p in s if p[3] == "estimated"
                for b in (p[2].get("estimated_band") or []) if isinstance(b, (int, float))]
    if not all_pts:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40" role="img">'
                '<text x="8" y="24" font-size="13">no champion measurements yet</text></svg>')
    frame = _Frame.around(all_pts, width, height)
    out = _plot_axes(frame, sorted({str(p[2].get("metric")) for p in all_pts}))
    for (model, series), color in zip(sorted(points.items()), _COLORS * 10):
        series.sort(key=lambda p: (p[0], p[3] != "measured"))
        line = " ".join(f"{frame.sx(t):.1f},{frame.sy(v):.1f}" for t, v, _, k in series if v == v and k != "estimated")
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{line}"><title>{html.escape(model)}</title></polyline>')
        out += [_plot_mark(frame, t, v, r, kind, color) for t, v, r, kind in series]
    if len(points) > 1:
        for i, ((model, _), color) in enumerate(zip(sorted(points.items()), _COLORS * 10)):
            out.append(f'<text x="{width - frame.right - 8}" y="{frame.top + 14 + 14 * i}" text-anchor="end" '
                       f'fill="{color}">{html.escape(model)}</text>')
    out.append("</svg>")
    return "".join(out)


def _number_or_nan(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")


def _plot_points(rows: Sequence[dict]) -> dict[str, list[tuple[dt.datetime, float, dict, str]]]:
    """Each model's points: (time, value, row, kind) with kind measured, estimated, promotion, shadow or rollback."""
    points: dict[str, list[tuple[dt.datetime, float, dict, str]]] = {}
    for r in rows:
        t = _when(r.get("time"))
        if t is None:
            continue
        series = points.setdefault(r.get("model") or "?", [])
        if isinstance(r.get("champion_metric"), (int, float)):
            series.append((t, float(r["champion_metric"]), r, "measured"))
        if isinstance(r.get("estimated_metric"), (int, float)):
            series.append((t, float(r["estimated_metric"]), r, "estimated"))
        kind = _MARKED.get(r.get("outcome") or "")
        if kind == "promotion" and isinstance(r.get("new_champion_metric"), (int, float)):
            series.append((t, float(r["new_champion_metric"]), r, "promotion"))
        elif kind in ("shadow", "rollback"):  # a shadow trial began or ended without serving, or a rollback: at the champion's level
            series.append((t, _number_or_nan(r.get("champion_metric")), r, kind))
    return points


@dataclass(frozen=True)
class _Frame:
    """The plot's area and scales: time to x, metric to y."""

    width: int
    height: int
    t0: dt.datetime
    t1: dt.datetime
    y0: float
    y1: float
    left: int = 56
    right: int = 40
    top: int = 16
    bottom: int = 46

    @classmethod
    def around(cls, pts: Sequence[tuple], width: int, height: int) -> "_Frame":
        y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
        pad = max((y1 - y0) * 0.1, 0.01)
        return cls(width, height, min(p[0] for p in pts), max(p[0] for p in pts), y0 - pad, y1 + pad)

    def sx(self, t: dt.datetime) -> float:
        span = max((self.t1 - self.t0).total_seconds(), 1.0)
        share = (t - self.t0).total_seconds() / span if self.t1 > self.t0 else 0.5
        return self.left + (self.width - self.left - self.right) * share

    def sy(self, v: float) -> float:
        return self.top + (self.height - self.top - self.bottom) * (1 - (v - self.y0) / (self.y1 - self.y0))


def _plot_axes(f: _Frame, metrics: list[str]) -> list[str]:
    """The SVG's opening, the plot area, the grid with its labels and the legend line."""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{f.width}" height="{f.height}" role="img" '
           f'aria-label="champion metric over time" font-family="sans-serif" font-size="11">',
           f'<rect x="{f.left}" y="{f.top}" width="{f.width - f.left - f.right}" height="{f.height - f.top - f.bottom}" '
           'fill="#fafafa" stroke="#ccc"/>']
    for i in range(5):  # y grid and labels
        v = f.y0 + (f.y1 - f.y0) * i / 4
        out.append(f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{f.sy(v):.1f}" y2="{f.sy(v):.1f}" stroke="#e4e4e4"/>'
                   f'<text x="{f.left - 6}" y="{f.sy(v) + 4:.1f}" text-anchor="end">{v:.3f}</text>')
    for i in range(4 if f.t1 > f.t0 else 1):  # x labels
        t = f.t0 + (f.t1 - f.t0) * (i / 3 if f.t1 > f.t0 else 0)
        out.append(f'<text x="{f.sx(t):.1f}" y="{f.height - f.bottom + 16}" text-anchor="middle">{t:%Y-%m-%d}</text>')
    out.append(f'<text x="{f.left}" y="{f.height - 8}">champion {html.escape(", ".join(metrics))} by the time of the data each run saw'
               ' · ● measured · ○ estimated without labels, with its band · ▲ promotion · ▼ rollback'
               ' · ◇ shadow trial started or dropped</text>')
    return out


def _plot_mark(f: _Frame, t: dt.datetime, v: float, r: dict, kind: str, color: str) -> str:
    """One point's mark, linked to its run's row: ● measured, ○ estimated (with its band), ◇ shadow, ▲ promotion, ▼ rollback."""
    esc = html.escape
    x, y = f.sx(t), (f.sy(v) if v == v else f.top + 8)
    tip = esc(f"{r.get('run_id')}: {kind} {r.get('metric')}={v:.4f} ({r.get('outcome')})")
    link = f'<a href="#{esc(r.get("run_id") or "")}">'
    if kind == "measured":
        return f'{link}<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{tip}</title></circle></a>'
    if kind == "estimated":
        band = ""
        lo, hi = (r.get("estimated_band") or [None, None])[:2]
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            band = (f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.sy(lo):.1f}" y2="{f.sy(hi):.1f}" stroke="{color}" '
                    f'stroke-opacity="0.5" stroke-width="3"/>')
            tip = esc(f"{r.get('run_id')}: estimated {r.get('metric')}={v:.4f} (95% band {lo:.4f}–{hi:.4f})"
                      + (f"; {r['estimate_unreliable']}" if r.get("estimate_unreliable") else ""))
        return (f'{band}{link}<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#fff" stroke="{color}" stroke-width="1.5">'
                f'<title>{tip}</title></circle></a>')
    if kind == "shadow":
        return (f'{link}<path d="M{x:.1f},{y - 6:.1f} l6,6 l-6,6 l-6,-6 z" fill="#fff" stroke="#9467bd" '
                f'stroke-width="1.5"><title>{tip}</title></path></a>')
    if kind == "promotion":
        return f'{link}<path d="M{x:.1f},{y - 7:.1f} l6,10 h-12 z" fill="#2ca02c"><title>{tip}</title></path></a>'
    return f'{link}<path d="M{x:.1f},{y + 7:.1f} l6,-10 h-12 z" fill="#d62728"><title>{tip}</title></path></a>'


# ---- the index --------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}
tr:target{background:#fff7d6}
td.num{text-align:right;white-space:nowrap}
ul{margin:0;padding-left:1.1em}
.succeeded{color:#1a7f37}.failed{color:#cf222e;font-weight:bold}.running{color:#9a6700}
.damaged{color:#cf222e;font-weight:bold}
.promoted,.bootstrapped{color:#1a7f37;font-weight:bold}.rolled-back,.blocked-by-quality,.rejected,.stuck{color:#9a6700}
small{color:#666}
small.unreliable{color:#9a6700}
small.shadow{color:#6e40aa}
.shadow-started,.promoted-from-shadow{color:#1a7f37}.shadow-dropped{color:#9a6700}
"""


def _fmt_scores(scores: dict[str, float]) -> str:
    return "<br>".join(f"{html.escape(k)}&nbsp;{v:.4f}" for k, v in scores.items()) or "—"


def _row_html(r: dict) -> str:
    esc = html.escape
    rid = esc(r["run_id"])
    folder = esc(r["folder"])
    reasons = "".join(f"<li>{esc(x)}</li>" for x in r["reasons"]) or "—"
    decision = esc(r.get("outcome") or r.get("decision") or "—")
    detail = []
    if r.get("verdict"):
        detail.append("<br><small>" + "; ".join(esc(v) for v in r["verdict"]) + "</small>")
    for w in r.get("warnings") or []:
        detail.append(f'<br><small class="warning">resource warning: {esc(w)}</small>')
    if r.get("shadow"):  # a challenger on trial beside the champion: how its trial stands
        detail.append(f'<br><small class="shadow">{esc(r["shadow"])}</small>')
    if r.get("estimate_unreliable"):  # the label-free estimate this run read cannot be trusted: it says why
        detail.append(f'<br><small class="unreliable">estimate {esc(r["estimate_unreliable"])}</small>')
    if r.get("error"):
        detail.append(f"<br><small>error at {esc(str(r['error'].get('step')))}: {esc(str(r['error'].get('message')))[:300]}</small>")
    champs = f"{esc(r.get('champion_before') or '—')}&nbsp;→&nbsp;{esc(r.get('champion_after') or '—')}"
    links = " ".join(
        f'<a href="{folder}/{esc(nb.get("href") or nb["html"])}" title="{esc(nb["name"])} ({esc(str(nb["status"]))})">{esc(nb["name"][:2])}</a>'
        for nb in r["notebooks"]
    )
    links += f' <a href="{folder}/manifest.json">manifest</a>'
    seconds = f"{r['seconds']:.0f}&nbsp;s" if isinstance(r.get("seconds"), (int, float)) else "—"
    when = esc((r.get("started") or "").replace("T", " ").replace("+00:00", "Z"))
    as_of = f"<br><small>data to {esc(r['as_of'])}</small>" if r.get("as_of") else ""
    return (f'<tr id="{rid}"><td>{when}{as_of}<br><small>{rid}</small></td><td>{esc(r.get("profile") or "")}'
            f'<br><small>{esc(r.get("model") or "")}</small></td><td><ul>{reasons}</ul></td>'
            f'<td class="{decision}">{decision}{"".join(detail)}</td><td>{champs}<br><small>{esc(r.get("challenger") or "")}</small></td>'
            f'<td class="num">{_fmt_scores(r["champion_scores"])}</td><td class="num">{_fmt_scores(r["challenger_scores"])}</td>'
            f'<td class="{esc(r.get("status") or "")}">{esc(r.get("status") or "")}</td><td class="num">{seconds}</td>'
            f"<td>{links}</td></tr>")


def _index_html(rows: Sequence[dict], *, generated: str) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.get("outcome") or r.get("status") or "?"] = counts.get(r.get("outcome") or r.get("status") or "?", 0) + 1
    summary = ", ".join(f"{v} {html.escape(k)}" for k, v in sorted(counts.items()))
    body = "\n".join(_row_html(r) for r in rows)
    damaged = [r["damaged"] for r in rows if r.get("damaged")]
    warning = (f'<p class="damaged">{len(damaged)} run{"s" if len(damaged) > 1 else ""} listed as damaged: '
               + "; ".join(f"<code>{html.escape(d)}</code>" for d in damaged) + "</p>\n") if damaged else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>retrain runs</title>"
        f"<style>{_CSS}</style></head><body>\n<h1>Retraining runs</h1>\n"
        f"<p>{len(rows)} runs ({summary}); generated {html.escape(generated)} by <code>retrain report</code>. "
        "Links 10–40 open each step's executed notebook.</p>\n"
        f"{warning}"
        f"<figure>{champion_plot(list(reversed(rows)))}</figure>\n"
        '<table id="runs"><thead><tr><th>time (UTC)</th><th>profile</th><th>trigger reasons</th><th>decision</th>'
        "<th>champion</th><th>champion metrics</th><th>challenger metrics</th><th>status</th><th>duration</th>"
        f"<th>notebooks</th></tr></thead><tbody>\n{body}\n</tbody></table>\n</body></html>\n"
    )


def _load_cache(path: Path) -> dict[str, Any]:
    cache = _read_json(path)
    if not isinstance(cache, dict) or cache.get("version") != _CACHE_VERSION:
        return {"version": _CACHE_VERSION, "runs": {}}
    return cache


def _run_dirs(runs: Path) -> Iterable[Path]:
    return (d for d in runs.iterdir() if d.is_dir() and not d.name.startswith(".") and (d / MANIFEST).exists())


def build_report(runs: str | os.PathLike, *, force: bool = False) -> ReportResult:
    """Render every finished run's notebooks (skipping those already rendered) and write ``runs/index.html``.

    A run still in progress is listed but its notebooks are rendered on a later call.
    """
    import time

    t0 = time.monotonic()
    runs = Path(runs)
    runs.mkdir(parents=True, exist_ok=True)
    cache_path = runs / _CACHE
    cache = _load_cache(cache_path)
    rows, rendered, skipped, exporter, seen = [], 0, 0, None, set()
    for d in _run_dirs(runs):
        seen.add(d.name)
        stamp = (d / MANIFEST).stat().st_mtime_ns
        entry = cache["runs"].get(d.name)
        if force or not entry or entry.get("stamp") != stamp:
            row = run_row(d)
            if row is None:
                continue
            entry = {"stamp": stamp, "row": row, "rendered": False}
            cache["runs"][d.name] = entry
        row = entry["row"]
        if row.get("damaged"):
            log.warning("report: %s", row["damaged"])
        if row.get("status") not in ("running", "damaged") and (force or not entry.get("rendered")):
            if force or any(_needs_render(d / nb["ipynb"]) for nb in row["notebooks"]):
                exporter = exporter or _exporter()  # nbconvert starts in seconds: only when there is work
                r, s = render_run(d, exporter=exporter, force=force)
            else:
                r, s = 0, len(row["notebooks"])
            rendered, skipped = rendered + r, skipped + s
            entry["rendered"] = True
        else:
            skipped += len(row["notebooks"])
        for nb in row["notebooks"]:  # a notebook not rendered yet (run in progress) links to its .ipynb
            nb["href"] = nb["html"] if (d / nb["html"]).exists() else nb["ipynb"]
        rows.append(row)
    cache["runs"] = {k: v for k, v in cache["runs"].items() if k in seen}
    rows.sort(key=lambda r: (bool(r.get("damaged")), r.get("started") or "", r["folder"]), reverse=True)  # damaged on top
    generated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    index = runs / INDEX
    _write_atomic(index, _index_html(rows, generated=generated))
    _write_atomic(cache_path, json.dumps(cache, default=str))
    result = ReportResult(index, len(rows), rendered, skipped, round(time.monotonic() - t0, 3),
                          tuple(r["damaged"] for r in rows if r.get("damaged")))
    log.info("report: %d runs listed, %d notebooks rendered, %d already rendered; %s (%.1f s)",
             result.runs, result.rendered, result.skipped, index, result.seconds)
    return result
