"""Shared test set-up: where the real mocap clips are, and JAX's persistent compilation cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real mocap clips beside the checkout. They may not be redistributed, so a fresh clone lacks them;
# $DIFFMIMIC_SHARED_MOCAP points elsewhere (=/nonexistent simulates a fresh clone).
MOCAP_FIXTURES = Path(os.environ.get("DIFFMIMIC_SHARED_MOCAP") or REPO_ROOT.parent / "shared" / "data" / "mocap")
NO_REAL_MOCAP = "needs the real mocap clips in ../shared/data/mocap (not redistributable; set DIFFMIMIC_SHARED_MOCAP)"


def pytest_configure(config):
    # Compiled humanoid steps take tens of seconds on a CPU: keep them across test processes.
    import jax

    cache = os.environ.get("DIFFMIMIC_TEST_JAX_CACHE", str(REPO_ROOT / ".cache" / "jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def mocap_fixtures() -> Path:
    """The directory of the real mocap clips: the only way a test reaches them.

    Without it the test skips, except in CI (CI=true), which has the clips: there it fails, so
    the real-data tests can never be skipped silently.
    """
    if not MOCAP_FIXTURES.is_dir():
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{NO_REAL_MOCAP}: {MOCAP_FIXTURES} is missing", pytrace=False)
        pytest.skip(NO_REAL_MOCAP)
    return MOCAP_FIXTURES
