"""The factory's end-of-run report, written into the library's ``reports/`` directory.

``reports/<dataset>.md`` and ``reports/<dataset>.json``: counts by status over the whole dataset
in the library (and this run's), the pose-error distribution, the slowest clips, failures with
their reasons and the files the dataset spec skipped; ``reports/<dataset>_pose_error.png``: the
pose-error histogram (matplotlib).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diffmimic import atomic
from factory.distribution.catalog import Catalog, skipped_reasons
from factory.library import PolicyLibrary

REPORTS_DIR = "reports"
SLOWEST = 10


def _histogram_png(errors: list[float], target: float | None, path: Path, title: str) -> Path | None:
    try:
        import matplotlib  # deferred: 3.5 s to import, and a report without it has no histogram

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if errors:
        ax.hist(np.asarray(errors) * 100, bins=min(40, max(5, len(errors) // 2)), color="#4477aa")
    if target is not None:
        ax.axvline(target * 100, color="#cc3311", linestyle="--", label=f"target {target * 100:g} cm")
        ax.legend()
    ax.set_xlabel("pose error (cm, root-relative, evaluation rollout)")
    ax.set_ylabel("clips")
    ax.set_title(title)
    fig.tight_layout()
    try:
        atomic.write_with(path, fig.savefig, suffix=".tmp.png")  # matplotlib takes the format from the name
    finally:
        plt.close(fig)
    return path


def _atomic_text(path: Path, text: str) -> None:
    atomic.write_text(path, text)


def write_report(library: PolicyLibrary, catalog: Catalog, run: dict) -> dict[str, Path]:
    """Writes the report of `catalog.dataset` in `library` after a run (`Coordinator.summary()`).

    Returns the paths: ``markdown``, ``json`` and ``histogram`` (absent without matplotlib)."""
    directory = Path(library.root) / REPORTS_DIR
    directory.mkdir(exist_ok=True)
    rows = library.query(dataset=catalog.dataset)
    catalog_ids = {e.clip_id for e in catalog.entries}
    counts = {status: sum(r.status == status for r in rows) for status in ("converged", "best_effort", "failed")}
    trained = [r for r in rows if r.status != "failed" and r.pose_error_m is not None]
    errors = sorted(r.pose_error_m for r in trained)
    quantiles = {f"p{q}": float(np.percentile(errors, q)) for q in (10, 50, 90)} if errors else {}
    slowest = sorted((r for r in trained if r.train_s is not None), key=lambda r: -r.train_s)[:SLOWEST]
    failures = [
        {"clip_id": r.clip_id, "error": r.error, "attempts": r.attempts, "source": r.source_path}
        for r in rows
        if r.status == "failed"
    ]
    checked = [r.robustness for r in trained if r.robustness]
    robustness = {
        "checked": len(checked),
        "passed": sum(bool(d["passed"]) for d in checked),
        "perturbed_rollouts": sum(int(d["rollouts"]) for d in checked),
        "perturbed_survived": sum(int(d["survived"]) for d in checked),
    }
    not_converged = [
        {"clip_id": r.clip_id, "pose_error_m": r.pose_error_m, "reason": r.reason}
        for r in rows
        if r.status == "best_effort"
    ]
    bins = np.linspace(0, max(errors[-1] if errors else 0.1, 0.1), 11)
    hist, _ = np.histogram(errors, bins=bins)
    data = {
        "dataset": catalog.dataset,
        "library": str(library.root),
        "clips_in_library": len(rows),
        "clips_in_this_catalog": len(catalog_ids),
        "missing_from_library": sorted(catalog_ids - {r.clip_id for r in rows}),
        "counts": counts,
        "pose_error_m": {
            "count": len(errors),
            **quantiles,
            "histogram": {"edges_m": bins.tolist(), "counts": hist.tolist()},
        },
        "slowest": [
            {
                "clip_id": r.clip_id,
                "train_s": r.train_s,
                "attempts": r.attempts,
                "frames": r.frames,
                "pose_error_m": r.pose_error_m,
            }
            for r in slowest
        ],
        "failures": failures,
        "robustness": robustness,
        "not_converged": not_converged,
        "skipped_by_spec": skipped_reasons(catalog.skipped),
        "run": {k: v for k, v in run.items() if k != "clips"},
        "run_clips": run.get("clips", []),
    }
    paths = {"json": directory / f"{catalog.dataset}.json", "markdown": directory / f"{catalog.dataset}.md"}
    png = _histogram_png(
        errors,
        run.get("target_pose_error_m"),
        directory / f"{catalog.dataset}_pose_error.png",
        f"{catalog.dataset}: {len(errors)} policies",
    )
    if png is not None:
        paths["histogram"] = png
    _atomic_text(paths["json"], json.dumps(data, indent=2, default=str))
    _atomic_text(paths["markdown"], _markdown(data, png))
    return paths


def _markdown(data: dict, png: Path | None) -> str:
    c, run = data["counts"], data["run"]
    lines = [
        f"# Factory report: {data['dataset']}",
        "",
        f"Library `{data['library']}`: {data['clips_in_library']} clips of this dataset.",
        "",
        "| converged | best_effort | failed | not yet in the library |",
        "|---|---|---|---|",
        f"| {c['converged']} | {c['best_effort']} | {c['failed']} | {len(data['missing_from_library'])} |",
        "",
        f"Last run: {run.get('written', 0)} clips written in {run.get('elapsed_s', 0):.0f} s "
        f"({run.get('clips_per_hour', 0):.1f} clips/h) by {run.get('workers', 0)} worker(s); "
        f"{run.get('skipped_done', 0)} already done; {run.get('lost_calls', 0)} calls lost with their worker; "
        f"target {run.get('target_pose_error_m')} m, at most {run.get('max_attempts')} attempts.",
        "",
    ]
    pe = data["pose_error_m"]
    lines += ["## Pose error", ""]
    if pe["count"]:
        lines += [
            f"{pe['count']} trained policies: p10 {pe['p10']:.3f} m, median {pe['p50']:.3f} m, p90 {pe['p90']:.3f} m.",
            "",
        ]
    if png is not None:
        lines += [f"![pose error histogram]({png.name})", ""]
    rb = data["robustness"]
    lines += ["## Robustness", ""]
    if rb["checked"]:
        lines += [
            f"{rb['passed']} of {rb['checked']} checked policies robust; {rb['perturbed_survived']} of "
            f"{rb['perturbed_rollouts']} perturbed and pushed rollouts without a fall.",
            "",
        ]
    else:
        lines += ["No policy checked under perturbation.", ""]
    if data["not_converged"]:
        lines += ["| best_effort clip | pose error (m) | why not converged |", "|---|---|---|"]
        lines += [
            f"| {n['clip_id']} | {n['pose_error_m']:.3f} | {str(n['reason'] or '-').replace('|', '/')} |"
            for n in data["not_converged"]
        ]
        lines.append("")
    lines += [
        "## Slowest clips",
        "",
        "| clip | train s | attempts | frames | pose error (m) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['clip_id']} | {s['train_s']:.1f} | {s['attempts']} | {s['frames']} | {s['pose_error_m']:.3f} |"
        for s in data["slowest"]
    ]
    lines += ["", "## Failures", ""]
    if data["failures"]:
        lines += ["| clip | attempts | reason |", "|---|---|---|"]
        lines += [
            f"| {f['clip_id']} | {f['attempts']} | {str(f['error']).replace('|', '/')} |" for f in data["failures"]
        ]
    else:
        lines.append("None.")
    lines += ["", "## Skipped by the dataset spec", ""]
    if data["skipped_by_spec"]:
        lines += [f"- {count} file(s): {reason}" for reason, count in sorted(data["skipped_by_spec"].items())]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"
