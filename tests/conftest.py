"""Shared test set-up: fixture paths and JAX's persistent compilation cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MOCAP_FIXTURES = REPO_ROOT.parent / "shared" / "data" / "mocap"


def pytest_configure(config):
    # Compiled humanoid steps take tens of seconds on a CPU: keep them across test processes.
    import jax

    cache = os.environ.get("DIFFMIMIC_TEST_JAX_CACHE", str(REPO_ROOT / ".cache" / "jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def mocap_fixtures() -> Path:
    if not MOCAP_FIXTURES.is_dir():
        pytest.skip(f"mocap fixtures not found at {MOCAP_FIXTURES}")
    return MOCAP_FIXTURES
