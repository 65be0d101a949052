"""Fixtures for the factory tests: real policies trained by the DiffMimic trainer.

The tiny configuration compiles once per session (and the persistent compilation cache in
tests/conftest.py keeps it across pytest processes); every clip then trains in seconds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

TINY = dict(num_envs=2, horizon=4, hidden=(32, 32), eval_every=2, iterations=2)
TRAINED_CLIPS = ("squat", "wave")


@dataclasses.dataclass
class Trained:
    """One clip trained by `diffmimic.train.train` and written by `write_outputs`."""

    name: str
    source: Path  # the sample mocap file
    reference: object
    result: object  # TrainResult
    config: object  # TrainConfig
    out_dir: Path  # the training output directory


@pytest.fixture(scope="session")
def tiny_config():
    from diffmimic.train import make_config

    return make_config("cpu", **TINY)


@pytest.fixture(scope="session")
def sample_clips(tmp_path_factory) -> dict[str, Path]:
    from diffmimic.mocap.sample import write_sample_dataset

    paths = write_sample_dataset(tmp_path_factory.mktemp("sample"))
    return {p.name.removesuffix("_poses.npz"): p for p in paths}


@pytest.fixture(scope="session")
def trained(sample_clips, tiny_config, tmp_path_factory) -> dict[str, Trained]:
    from diffmimic.mocap.retarget import load_reference
    from diffmimic.train import train, write_outputs

    runs = {}
    for seed, name in enumerate(TRAINED_CLIPS):
        config = dataclasses.replace(tiny_config, seed=seed)
        reference = load_reference(sample_clips[name], fps=config.env.control_hz)
        result = train(reference, config, progress=None)
        out_dir = write_outputs(tmp_path_factory.mktemp(f"train_{name}"), result, config, reference)
        runs[name] = Trained(
            name=name, source=sample_clips[name], reference=reference, result=result, config=config, out_dir=out_dir
        )
    return runs


def _put_trained(library, clip_id: str, run: Trained, status: str = "best_effort", **kwargs):
    """Puts a trained run into `library` under `clip_id`."""
    return library.put_result(
        clip_id, run.result, run.config, run.reference, status=status, source_path=run.source, **kwargs
    )


@pytest.fixture(scope="session")
def put_trained():
    return _put_trained


@pytest.fixture
def small_library(tmp_path, trained):
    """A real library: squat and wave in `sample`, squat again in `other` (a short-name clash),
    a second squat version, and a failed clip."""
    from factory.library import PolicyLibrary

    library = PolicyLibrary(tmp_path / "lib", create=True)
    put_trained = _put_trained
    put_trained(library, "sample/squat_poses", trained["squat"], status="best_effort")
    put_trained(library, "sample/squat_poses", trained["squat"], status="converged", attempts=2)
    put_trained(library, "sample/wave_poses", trained["wave"], status="converged")
    put_trained(library, "other/mocap/squat_poses", trained["squat"], status="best_effort")
    library.put_failure(
        "sample/torso_twist_poses",
        "non-finite loss in every attempt",
        attempts=3,
        source_path=trained["squat"].source.with_name("torso_twist_poses.npz"),
    )
    return library


@dataclasses.dataclass
class PageLoad:
    """What a headless Chromium saw of a page: the DOM after its scripts ran, the console lines
    it logged, and a screenshot (PNG path)."""

    dom: str
    console: list
    screenshot: Path


def _chromium() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """`load(page, width, height) -> PageLoad` with Debian's headless Chromium (installed by
    .ci/run). Without a Chromium the tests skip, except in CI (CI=true) where they fail."""
    import os
    import re
    import subprocess

    executable = _chromium()
    if executable is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("chromium is not installed (CI installs Debian's chromium in .ci/run)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(page: Path, *flags: str, width: int, height: int) -> subprocess.CompletedProcess:
        command = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={width},{height}",
            "--virtual-time-budget=3000",
            # Frames follow virtual time even when the CPU is busy (two test processes
            # compiling): without it a loaded machine drew one animation frame in 3 s.
            "--run-all-compositor-stages-before-draw",
            *flags,
            Path(page).resolve().as_uri(),
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    def load(page: Path, width: int = 1000, height: int = 700) -> PageLoad:
        shot = Path(page).with_suffix(".screenshot.png")
        dom = run(page, "--dump-dom", width=width, height=height)
        assert dom.returncode == 0, dom.stderr[-2000:]
        shots = run(page, f"--screenshot={shot}", width=width, height=height)
        assert shots.returncode == 0 and shot.is_file(), shots.stderr[-2000:]
        console = [
            line for out in (dom.stderr, shots.stderr) for line in out.splitlines() if re.search(r":CONSOLE[:(]", line)
        ]
        return PageLoad(dom=dom.stdout, console=console, screenshot=shot)

    return load
