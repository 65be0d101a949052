"""The library's HTML report: one self-contained page for the whole library.

`write_library_report(library, out_dir)` writes `out_dir/index.html`: counts by status, pose-error
quantiles, an SVG histogram of pose errors (converged and best-effort stacked), the table of every
clip (status, pose error, fell, samples, training time, attempts, version; sortable by any column,
filtered by text and status, 100 rows a page, so thousands of clips stay readable), failures
grouped by reason (each group lists its clips with the full message), and links to renders:
`out_dir/renders/<clip>.html`, made for the policies that have none yet (`renders`: "all",
"none" or a number of new renders). CLI: `python -m factory.library report --out DIR`.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from diffmimic import atomic
from factory.library import PolicyLibrary, PolicyRecord

STATUS_COLOURS = {"converged": "#4a9c5d", "best_effort": "#e0a040", "failed": "#c0504d"}


def render_file_name(record: PolicyRecord) -> str:
    """The render's file name for a clip version (path separators and odd characters → '_')."""
    return re.sub(r"[^A-Za-z0-9_.+=,-]+", "_", record.clip_id.replace("/", "__")) + f"__v{record.version}.html"


def make_renders(
    library: PolicyLibrary,
    records: list[PolicyRecord],
    directory: Path,
    limit: int | None,
    seconds: float | None = None,
    progress=print,
) -> dict[str, str]:
    """Renders (HTML viewer) every record with a policy that has no render in `directory` yet, at
    most `limit` new ones (None: all). Returns {clip_id: file name} of the renders that exist."""
    from factory.presentation.render import scene_for_policy, write_html

    directory.mkdir(parents=True, exist_ok=True)
    existing, todo = {}, []
    for record in records:
        if record.path is None:
            continue
        name = render_file_name(record)
        if (directory / name).is_file():
            existing[record.clip_id] = name
        else:
            todo.append((record, name))
    if limit is not None:
        todo = todo[: max(0, limit)]
    started = time.perf_counter()
    for i, (record, name) in enumerate(todo, 1):
        try:
            policy = library.load_policy(record.clip_id, record.version)
            scene, _ = scene_for_policy(policy, seconds=seconds)
            write_html(scene, directory / name)
            existing[record.clip_id] = name
            outcome = "ok"
        except Exception as err:  # a broken checkpoint must not stop the report
            outcome = f"failed ({type(err).__name__}: {err})"
        if progress is not None:
            elapsed = time.perf_counter() - started
            eta = elapsed / i * (len(todo) - i)
            progress(f"render {i}/{len(todo)} {record.clip_id}: {outcome}  {i / elapsed:.2f}/s  ETA {eta:.0f} s")
    return existing


def _failure_key(record: PolicyRecord) -> str:
    """A failure message with its file path and numbers taken out, so alike failures group."""
    text = (record.error or "unknown error").strip().splitlines()[0]
    if record.source_path:
        text = text.replace(record.source_path, "FILE")
    text = re.sub(r"(/[^\s:,;]+)+", "FILE", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)


def _histogram_svg(records: list[PolicyRecord], width: int = 640, height: int = 220) -> str:
    ok = [
        r
        for r in records
        if r.status in ("converged", "best_effort") and r.pose_error_m is not None and np.isfinite(r.pose_error_m)
    ]
    if not ok:
        return "<p>No trained policies yet.</p>"
    errors_cm = np.array([r.pose_error_m for r in ok]) * 100
    top = float(np.quantile(errors_cm, 0.99)) if len(ok) > 20 else float(errors_cm.max())
    top = max(top * 1.05, 5.0)  # at least 0-5 cm, so a few good clips do not fill the axis
    bins = min(40, max(8, int(np.sqrt(len(ok)) * 2)))
    edges = np.linspace(0, top, bins + 1)
    counts = {
        s: np.histogram(np.clip([r.pose_error_m * 100 for r in ok if r.status == s], 0, top), edges)[0]
        for s in ("converged", "best_effort")
    }
    total = counts["converged"] + counts["best_effort"]
    peak = max(1, int(total.max()))
    left, bottom, right, top_pad = 44, 34, 10, 10
    plot_w, plot_h = width - left - right, height - bottom - top_pad
    bar_w = plot_w / bins
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="pose error histogram">'
    ]
    for k in range(bins):
        y = height - bottom
        for status in ("converged", "best_effort"):
            h = plot_h * counts[status][k] / peak
            if h > 0:
                y -= h
                parts.append(
                    f'<rect x="{left + k * bar_w + 0.5:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="{STATUS_COLOURS[status]}"><title>{edges[k]:.1f}-'
                    f"{edges[k + 1]:.1f} cm: {counts[status][k]} {status}</title></rect>"
                )
    for tick in np.linspace(0, top, 6):
        x = left + plot_w * tick / top
        parts.append(
            f'<text x="{x:.1f}" y="{height - bottom + 14}" font-size="11" text-anchor="middle">{tick:.1f}</text>'
        )
    for tick in np.unique(np.linspace(0, peak, min(peak, 4) + 1).round().astype(int)):
        y = height - bottom - plot_h * tick / peak
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{tick}</text>'
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7ec"/>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 4}" font-size="12" text-anchor="middle">pose error (cm, '
        f"root-relative, evaluation rollout){' — clipped at the 99th percentile' if len(ok) > 20 else ''}</text>"
    )
    for k, status in enumerate(("converged", "best_effort")):
        x = width - right - 200 + 100 * k
        parts.append(
            f'<rect x="{x}" y="{top_pad}" width="10" height="10" fill="{STATUS_COLOURS[status]}"/>'
            f'<text x="{x + 14}" y="{top_pad + 9}" font-size="11">{status}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #223; margin: 0 auto; max-width: 1200px; padding: 12px 20px 40px; }
h1 { font-size: 22px; margin: 8px 0 2px; } h2 { font-size: 17px; margin: 26px 0 8px; }
.muted { color: #667; font-size: 13px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0; }
.card { border: 1px solid #dde2ea; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 22px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #eef0f4; text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
th { cursor: pointer; user-select: none; background: #f6f7f9; position: sticky; top: 0; }
th.sorted-asc::after { content: " \\25B2"; } th.sorted-desc::after { content: " \\25BC"; }
td.clip { white-space: normal; word-break: break-all; max-width: 420px; }
td.err { white-space: normal; color: #844; max-width: 360px; }
.status { padding: 1px 7px; border-radius: 9px; color: #fff; font-size: 12px; }
.toolbar { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; margin: 8px 0; font-size: 13px; }
.toolbar input[type=search] { width: 260px; padding: 3px 6px; }
details { margin: 4px 0; } summary { cursor: pointer; }
details ul { margin: 4px 0 8px; font-size: 12px; } code { font-size: 12px; }
</style></head>
<body>
<h1>__TITLE__</h1>
<div class="muted">__SUBTITLE__</div>
<div class="cards">__CARDS__</div>
<h2>Pose error</h2>
__HISTOGRAM__
<div class="muted">__QUANTILES__</div>
<h2>Clips</h2>
<div class="toolbar">
  <input id="filter" type="search" placeholder="filter clips (text in the id or error)" aria-label="filter">
  <label>status <select id="status"><option value="">all</option><option>converged</option><option>best_effort</option><option>failed</option></select></label>
  <label><input id="fell" type="checkbox"> only falls</label>
  <span id="count" class="muted"></span>
  <span style="flex:1"></span>
  <button id="prev" type="button">&larr; prev</button><span id="page" class="muted"></span><button id="next" type="button">next &rarr;</button>
</div>
<table id="clips"><thead><tr>
  <th data-key="clip_id">clip</th><th data-key="status">status</th><th data-key="pose_error_m" class="num">pose error (m)</th>
  <th data-key="fell">fell</th><th data-key="robust_survival" class="num" title="perturbed and pushed rollouts of the whole clip without a fall (the check convergence requires)">robust</th><th data-key="samples" class="num">samples</th><th data-key="train_s" class="num">train (s)</th>
  <th data-key="attempts" class="num">attempts</th><th data-key="version" class="num">version</th>
  <th data-key="at_limit_pct" class="num" title="share of control steps where some joint asked for more than its torque limit">at torque limit (%)</th>
  <th data-key="peak_of_limit" class="num" title="the largest joint torque as a share of its limit">peak torque / limit</th>
  <th data-key="foot_skate_m_s" class="num" title="horizontal speed of feet touching the floor">foot skate (m/s)</th>
  <th data-key="foot_penetration_cm" class="num" title="deepest foot corner below the floor">foot depth (cm)</th>
  <th data-key="render">render</th>
</tr></thead><tbody></tbody></table>
<h2>Failures</h2>
__FAILURES__
<script id="rows" type="application/json">__ROWS__</script>
<script>
(function () {
  "use strict";
  const rows = JSON.parse(document.getElementById("rows").textContent);
  const colours = __COLOURS__;
  const PAGE = 100;
  const state = { key: "clip_id", dir: 1, page: 0, text: "", status: "", fell: false };
  const tbody = document.querySelector("#clips tbody");
  const fmt = (v, digits) => v === null || v === undefined ? "" : (typeof v === "number" ? v.toFixed(digits) : String(v));
  function cell(tag, text, cls) { const td = document.createElement(tag); td.textContent = text; if (cls) td.className = cls; return td; }
  function visible() {
    const text = state.text.toLowerCase();
    return rows.filter((r) => (!state.status || r.status === state.status) && (!state.fell || r.fell)
      && (!text || r.clip_id.toLowerCase().includes(text) || (r.error || "").toLowerCase().includes(text)));
  }
  function compare(a, b) {
    const x = a[state.key], y = b[state.key];
    if (x === y) return a.clip_id < b.clip_id ? -1 : 1;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * state.dir;
  }
  function draw() {
    const list = visible().sort(compare);
    const pages = Math.max(1, Math.ceil(list.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    tbody.replaceChildren();
    for (const r of list.slice(state.page * PAGE, (state.page + 1) * PAGE)) {
      const tr = document.createElement("tr");
      const clip = cell("td", r.clip_id, "clip");
      for (const note of [r.error, r.reason]) {
        if (note) { const e = document.createElement("div"); e.className = "err"; e.textContent = note; clip.appendChild(e); }
      }
      tr.appendChild(clip);
      const st = document.createElement("td"); const badge = document.createElement("span");
      badge.className = "status"; badge.style.background = colours[r.status] || "#888"; badge.textContent = r.status;
      st.appendChild(badge); tr.appendChild(st);
      tr.appendChild(cell("td", fmt(r.pose_error_m, 4), "num"));
      tr.appendChild(cell("td", r.fell === null ? "" : (r.fell ? "yes" : "no")));
      tr.appendChild(cell("td", r.robust || "", "num"));
      tr.appendChild(cell("td", r.samples === null ? "" : r.samples.toLocaleString("en"), "num"));
      tr.appendChild(cell("td", fmt(r.train_s, 0), "num"));
      tr.appendChild(cell("td", fmt(r.attempts, 0), "num"));
      tr.appendChild(cell("td", fmt(r.version, 0), "num"));
      tr.appendChild(cell("td", fmt(r.at_limit_pct, 1), "num"));
      tr.appendChild(cell("td", fmt(r.peak_of_limit, 2), "num"));
      tr.appendChild(cell("td", fmt(r.foot_skate_m_s, 3), "num"));
      tr.appendChild(cell("td", fmt(r.foot_penetration_cm, 1), "num"));
      const rd = document.createElement("td");
      if (r.render) { const a = document.createElement("a"); a.href = r.render; a.textContent = "view"; rd.appendChild(a); }
      tr.appendChild(rd);
      tbody.appendChild(tr);
    }
    document.getElementById("count").textContent = `${list.length} of ${rows.length} clips`;
    document.getElementById("page").textContent = ` page ${state.page + 1}/${pages} `;
    document.querySelectorAll("#clips th").forEach((th) => {
      th.classList.toggle("sorted-asc", th.dataset.key === state.key && state.dir > 0);
      th.classList.toggle("sorted-desc", th.dataset.key === state.key && state.dir < 0);
    });
    document.body.dataset.rowsShown = String(tbody.children.length);
  }
  document.querySelectorAll("#clips th").forEach((th) => th.addEventListener("click", () => {
    state.dir = state.key === th.dataset.key ? -state.dir : 1; state.key = th.dataset.key; state.page = 0; draw();
  }));
  document.getElementById("filter").addEventListener("input", (e) => { state.text = e.target.value; state.page = 0; draw(); });
  document.getElementById("status").addEventListener("change", (e) => { state.status = e.target.value; state.page = 0; draw(); });
  document.getElementById("fell").addEventListener("change", (e) => { state.fell = e.target.checked; state.page = 0; draw(); });
  document.getElementById("prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); draw(); });
  document.getElementById("next").addEventListener("click", () => { state.page += 1; draw(); });
  draw();
})();
</script>
</body></html>
"""


def _failures_html(records: list[PolicyRecord]) -> str:
    failed = [r for r in records if r.status == "failed"]
    if not failed:
        return "<p>None.</p>"
    groups: dict[str, list[PolicyRecord]] = defaultdict(list)
    for r in failed:
        groups[_failure_key(r)].append(r)
    parts = [f'<p class="muted">{len(failed)} failed clip(s) in {len(groups)} kind(s) of failure.</p>']
    for key, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        items = "".join(
            f"<li><code>{html.escape(r.clip_id)}</code> ({r.attempts} attempt(s)): {html.escape(r.error or '')}</li>"
            for r in members[:500]
        )
        more = f"<li>... and {len(members) - 500} more</li>" if len(members) > 500 else ""
        parts.append(
            f"<details{' open' if len(groups) <= 3 and len(members) <= 20 else ''}><summary><b>{len(members)}</b> "
            f"&times; {html.escape(key)}</summary><ul>{items}{more}</ul></details>"
        )
    return "".join(parts)


def plausibility_columns(library: PolicyLibrary, record: PolicyRecord) -> dict:
    """The report's plausibility columns of a policy, from its stored evaluation (result.json);
    None where the policy predates them or has no files."""
    empty = {"at_limit_pct": None, "peak_of_limit": None, "foot_skate_m_s": None, "foot_penetration_cm": None}
    if record.path is None:
        return empty
    try:
        plausibility = json.loads((library.path_of(record) / "result.json").read_text()).get("plausibility") or {}
    except (OSError, ValueError):
        return empty
    if not plausibility:
        return empty
    return {
        "at_limit_pct": 100.0 * plausibility["at_limit_share"],
        "peak_of_limit": max(g["peak_of_limit"] for g in plausibility["torque"].values()),
        "foot_skate_m_s": plausibility["foot_skate_m_s"],
        "foot_penetration_cm": 100.0 * plausibility["foot_penetration_max_m"],
    }


def write_library_report(
    library: PolicyLibrary,
    out_dir: str | os.PathLike,
    dataset: str | None = None,
    renders: str | int = "all",
    render_seconds: float | None = None,
    progress=print,
) -> Path:
    """Writes `out_dir/index.html` (and renders into `out_dir/renders/`). Returns the page's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = library.query(dataset=dataset)
    if renders == "none" or renders == 0:
        limit = 0
    elif renders == "all":
        limit = None
    else:
        limit = int(renders)
    rendered = make_renders(library, records, out_dir / "renders", limit, render_seconds, progress)

    counts = {s: sum(r.status == s for r in records) for s in STATUS_COLOURS}
    trained = [r for r in records if r.status != "failed" and r.pose_error_m is not None]
    errors = np.array([r.pose_error_m for r in trained], float)
    quantiles = (
        (
            "pose error (m) over trained clips: "
            + ", ".join(
                f"{name} {np.quantile(errors, q):.4f}"
                for name, q in (("min", 0), ("p10", 0.1), ("median", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1))
            )
        )
        if errors.size
        else ""
    )
    fell = sum(bool(r.fell) for r in trained)
    samples = sum(r.samples or 0 for r in records)
    train_s = sum(r.train_s or 0 for r in records)
    cards = (
        [("clips", len(records))]
        + [(s, counts[s]) for s in STATUS_COLOURS]
        + [("fell (trained)", fell), ("samples", f"{samples:,}"), ("training hours", f"{train_s / 3600:.1f}")]
    )
    cards_html = "".join(
        f'<div class="card"><span class="muted">{html.escape(k)}</span><b>{v}</b></div>' for k, v in cards
    )
    rows = [
        {
            "clip_id": r.clip_id,
            "status": r.status,
            "pose_error_m": r.pose_error_m,
            "fell": r.fell,
            "samples": r.samples,
            "train_s": r.train_s,
            "attempts": r.attempts,
            "version": r.version,
            "error": r.error,
            "reason": r.reason,
            "robust": f"{r.robustness['survived']}/{r.robustness['rollouts']}" if r.robustness else None,
            "robust_survival": r.robustness["survival"] if r.robustness else None,
            "render": f"renders/{rendered[r.clip_id]}" if r.clip_id in rendered else None,
            **plausibility_columns(library, r),
        }
        for r in records
    ]
    title = f"Policy library{'' if dataset is None else f': {dataset}'}"
    subtitle = (
        f"{html.escape(str(library.root))} · {len(records)} clips · "
        f"{len(rendered)} render(s) · written {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    replacements = {
        "__TITLE__": html.escape(title),
        "__SUBTITLE__": subtitle,
        "__CARDS__": cards_html,
        "__HISTOGRAM__": _histogram_svg(records),
        "__QUANTILES__": html.escape(quantiles),
        "__FAILURES__": _failures_html(records),
        "__COLOURS__": json.dumps(STATUS_COLOURS),
        "__ROWS__": json.dumps(rows, separators=(",", ":")).replace("</", "<\\/"),
    }
    page = re.sub("|".join(map(re.escape, replacements)), lambda m: replacements[m.group(0)], _PAGE)
    path = out_dir / "index.html"
    return atomic.write_text(path, page)
