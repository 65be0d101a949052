"""The factory's command line: a driver killed mid-run, then the same command run again.

The driver runs as `python factory/run.py` (the script form `ray submit` uses) in its own session
with its own local Ray; SIGKILL to its process group is a crashed head node. Run again, it
continues: no clip twice, nothing lost, clips already in the library not retrained.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_JSON = json.dumps({"num_envs": 2, "horizon": 4, "hidden": [32, 32], "eval_every": 2, "iterations": 20})


def _rows(library: Path) -> list[tuple]:
    index = library / "index.sqlite"
    if not index.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT clip_id, version, created_at FROM policies ORDER BY clip_id").fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet


def _command(data: Path, library: Path, summary: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "factory" / "run.py"),
        "--dataset",
        "sample",
        "--data-root",
        str(data),
        "--library",
        str(library),
        "--config-json",
        TINY_JSON,
        "--max-attempts",
        "1",
        "--workers",
        "1",
        "--ray-address",
        "local",
        "--num-cpus",
        "2",
        "--progress-every-s",
        "5",
        "--summary-json",
        str(summary),
        "--report-renders",
        "0",
    ]


def test_driver_killed_then_rerun_continues(tmp_path, sample_clips):
    import jax

    data = tmp_path / "data"
    data.mkdir()
    for path in sample_clips.values():
        (data / path.name).write_bytes(path.read_bytes())
    library = tmp_path / "lib"
    env = {**os.environ, "DIFFMIMIC_JAX_CACHE": jax.config.jax_compilation_cache_dir, "PYTHONUNBUFFERED": "1"}

    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(
        _command(data, library, tmp_path / "first.json"),
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and len(_rows(library)) < 2 and first.poll() is None:
            time.sleep(0.05)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)  # the driver and everything it started
        first.wait(timeout=60)
        log.close()
    before = _rows(library)
    assert 2 <= len(before) < 6, (before, (tmp_path / "first.log").read_text()[-3000:])

    second = subprocess.run(
        _command(data, library, tmp_path / "second.json"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = _rows(library)
    assert sorted(clip for clip, _, _ in after) == sorted(f"sample/{p.stem}" for p in sample_clips.values())
    assert all(version == 1 for _, version, _ in after)  # nothing twice
    assert set(before) <= set(after)  # what was written before the kill is untouched
    summary = json.loads((tmp_path / "second.json").read_text())
    assert summary["skipped_done"] == len(before) and summary["written"] == 6 - len(before)
    assert f"{len(before)} clip(s) already in the library" in second.stdout
    # A readable console: the factory's lines, not Ray's notes or the workers' own output.
    console = second.stdout + second.stderr
    for noise in (
        "Started a local Ray instance",
        "authentication token",
        "(ClipTrainer pid=",
        "Failed to import warp",
        "not actively being maintained",
    ):
        assert noise not in console, (noise, console[-3000:])
    assert "ray: started a local Ray" in console


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_within_seconds_and_a_rerun_resumes(tmp_path, sample_clips, signum):
    import jax

    data = tmp_path / "data"
    data.mkdir()
    path = sample_clips["squat"]
    (data / path.name).write_bytes(path.read_bytes())
    library = tmp_path / "lib"
    env = {**os.environ, "DIFFMIMIC_JAX_CACHE": jax.config.jax_compilation_cache_dir, "PYTHONUNBUFFERED": "1"}
    command = _command(data, library, tmp_path / "summary.json")
    command[command.index("--config-json") + 1] = TINY_JSON.replace('"iterations": 20', '"iterations": 300')
    command += ["--checkpoint-every", "5"]
    status = library / ".factory" / "workers" / "0.json"

    run = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as a terminal's foreground job, however pytest was started: a shell's background job
        # (`cmd &`) starts with SIGINT ignored, and a child inherits that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and run.poll() is None:
            if status.is_file() and json.loads(status.read_text() or "{}").get("checkpointed"):
                break
            time.sleep(0.1)
        if run.poll() is not None:
            out, err = run.communicate()
            pytest.fail(f"the run ended before its first checkpoint: {out[-2000:]} {err[-2000:]}")
        sent = time.time()
        os.kill(run.pid, signum)  # the driver only, as a terminal's Ctrl-C or a scheduler's stop
        out, err = run.communicate(timeout=60)
        stopped_s = time.time() - sent
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == (130 if signum == signal.SIGINT else 143), err[-2000:]
    assert stopped_s < 30 and "interrupted (" in err and "Traceback" not in err, (stopped_s, err[-2000:])
    assert "1 in flight keep their checkpoints" in err
    assert list((library / ".factory" / "checkpoints").glob("*.msgpack"))
    if signum == signal.SIGINT:
        return
    # The same command again resumes the clip from its checkpoint.
    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    summary = json.loads((tmp_path / "summary.json").read_text()) if again.returncode == 0 else None
    assert summary is not None, again.stdout[-2000:] + again.stderr[-2000:]
    [clip] = summary["clips"]
    assert clip["resumed_from"] and clip["resumed_from"][0] >= 5
