"""The library's HTML report: every clip in a sortable table, the histogram, failures grouped by
reason, links to renders; readable (paged) with thousands of clips in a real browser."""

from __future__ import annotations

import json
import re

import pytest


def _rows(page: str) -> list[dict]:
    match = re.search(r'<script id="rows" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_report_of_a_library(small_library, tmp_path, browser):
    from factory.library.cli import main
    from factory.presentation.library_report import write_library_report

    out = tmp_path / "report"
    page_path = write_library_report(small_library, out, renders=1, progress=None)
    page = page_path.read_text()
    rows = _rows(page)
    assert sorted(r["clip_id"] for r in rows) == sorted(r.clip_id for r in small_library.query())
    by_id = {r["clip_id"]: r for r in rows}
    assert by_id["sample/squat_poses"]["version"] == 2 and by_id["sample/squat_poses"]["attempts"] == 2
    assert by_id["sample/torso_twist_poses"]["status"] == "failed"
    # Plausibility of the stored evaluation: torque against limits, feet.
    wave = by_id["sample/wave_poses"]
    assert 0.0 <= wave["at_limit_pct"] <= 100.0 and 0.0 < wave["peak_of_limit"] <= 1.0
    assert wave["foot_skate_m_s"] >= 0.0 and wave["foot_penetration_cm"] >= 0.0
    assert by_id["sample/torso_twist_poses"]["at_limit_pct"] is None  # failed: no evaluation
    assert "non-finite loss in every attempt" in page  # the failure with its reason
    assert "<svg" in page and "pose error histogram" in page
    rendered = [r for r in rows if r["render"]]
    assert len(rendered) == 1 and (out / rendered[0]["render"]).is_file()
    assert by_id["sample/torso_twist_poses"]["render"] is None  # a failed clip has no policy to render

    # again with all renders: the missing ones are made, the existing one is kept
    first = out / rendered[0]["render"]
    mtime = first.stat().st_mtime_ns
    assert main(["--root", str(small_library.root), "report", "--out", str(out), "--seconds", "0.5"]) == 0
    rows = _rows(page_path.read_text())
    assert sum(bool(r["render"]) for r in rows) == 3 and first.stat().st_mtime_ns == mtime

    loaded = browser(page_path, width=1200, height=900)
    assert loaded.console == [], loaded.console
    assert 'data-rows-shown="4"' in loaded.dom
    assert "sample/wave_poses" in loaded.dom


def test_report_stays_readable_with_thousands_of_clips(tmp_path, browser):
    from factory.library import PolicyLibrary
    from factory.presentation.library_report import write_library_report

    library = PolicyLibrary(tmp_path / "big", create=True)
    for i in range(3000):
        reason = (
            f"/data/mocap/clip_{i:04d}.npz: NaN in poses at frame {i % 7}"
            if i % 3
            else f"/data/mocap/clip_{i:04d}.npz: truncated file"
        )
        library.put_failure(f"big/clip_{i:04d}", reason, attempts=1)
    page_path = write_library_report(library, tmp_path / "report", renders="none", progress=None)
    page = page_path.read_text()
    assert len(_rows(page)) == 3000
    assert "in 2 kind(s) of failure" in page  # 3,000 failures, grouped by reason
    assert page_path.stat().st_size < 2_000_000

    loaded = browser(page_path, width=1200, height=900)
    assert loaded.console == [], loaded.console
    assert 'data-rows-shown="100"' in loaded.dom  # one page of 100, not 3,000 rows
    assert "page 1/30" in loaded.dom


def test_report_cli_errors(small_library, tmp_path, capsys):
    from factory.library.cli import main

    assert main(["--root", str(small_library.root), "report", "--out", str(tmp_path), "--renders", "some"]) == 2
    assert "--renders must be" in capsys.readouterr().err
    assert main(["--root", str(tmp_path / "nowhere"), "report", "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize("renders", ["none", "0"])
def test_report_without_renders_simulates_nothing(small_library, tmp_path, renders):
    from factory.library.cli import main

    assert main(["--root", str(small_library.root), "report", "--out", str(tmp_path), "--renders", renders]) == 0
    assert not any((tmp_path / "renders").iterdir())
