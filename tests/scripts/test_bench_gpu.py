"""scripts/bench_gpu.py: `--smoke` runs every stage on a CPU and writes measured figures; `--factory`
without Ray says so in one line. The GPU day must not find a typo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bench_gpu.py"


@pytest.mark.slow  # ~4 min on a shared 2-core CPU: five child processes, each tracing a humanoid train step
def test_smoke_writes_measured_figures(tmp_path):
    # The embedded sample clip (no --data-root clips): the same code path, shorter references;
    # the suite's compilation cache (tests/conftest.py), so a warm run loads the tiny steps.
    cache = os.environ.get("DIFFMIMIC_TEST_JAX_CACHE", str(REPO / ".cache" / "jax"))
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--smoke",
            "--budget-s",
            "900",
            "--out",
            str(tmp_path),
            "--cache-dir",
            cache,
            "--data-root",
            str(tmp_path / "no-clips"),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    (path,) = tmp_path.glob("gpu_*_smoke.json")
    data = json.loads(path.read_text())
    assert data["device"]["platform"] == "cpu" and data["device"]["jax"] and data["versions"]["brax"]
    assert data["skipped"] == []
    steps = data["train_step"]
    assert [(r["backend"], r["body"]) for r in steps] == [("spring", "uniform")]  # mjx: too slow for a CPU
    for row in steps + data["slots"]:
        assert row["kind"] in ("train_step", "slots"), row
        assert row["samples_per_s"] > 0 and row["compile_s"] > 0 and row["iteration_s"] > 0
        assert row["peak_memory_gb"] > 0 and row["peak_memory_source"].startswith("process peak RSS")
    assert [r["slots"] for r in data["slots"]] == [1, 2]
    alone, slot = data["train"]["alone"], data["train"]["slot"]
    assert alone["iterations"] == 4 and alone["samples"] == 4 * 2 * 4 and alone["wall_s"] > 0
    assert slot["slots"] == 2 and slot["iterations"] == 4 and slot["wall_s"] > 0
    derived = data["derived"]
    assert derived["auto_clips_per_worker"]["choice"] in (1, 2)
    assert derived["alone_device_s_per_mocap_s"] > 0 and derived["slot_device_s_per_mocap_s"] > 0
    assert set(derived["per_k_device_s_per_mocap_s"]) == {"1", "2"}
    assert "1. train step" in done.stdout and "4. device-seconds per second of mocap" in done.stdout


def test_factory_mode_without_ray_says_so(tmp_path, monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    bench_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_gpu)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real_find_spec(name, *a)
    )
    args = bench_gpu._parser().parse_args(["--factory", "--out", str(tmp_path)])
    assert bench_gpu.factory_mode(args, []) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "skipped: Ray is not installed" in out[0]
    assert not list(tmp_path.iterdir())
