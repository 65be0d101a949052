"""Policies written by earlier code still load.

`tests/fixtures/library_schema1` is a library holding one tiny policy (a 1 s segment of the
synthetic sample squat, trained 2 iterations with the factory tests' tiny config, so the compiled
rollout is shared with them), written by the code of 2026-11-29: index schema 1, TrainConfig
schema 2, an Orbax checkpoint. Today's code must open it (migrating the
index when its schema grows), find it by name, verify its files and load and run the policy.
Keep the fixture as it is; when a format changes, add a fixture of the new one beside it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from factory.library import PolicyLibrary, load_policy_directory

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "library_schema1"


def test_a_library_written_by_earlier_code_opens_verifies_and_runs(tmp_path):
    root = shutil.copytree(FIXTURE, tmp_path / "lib")  # opening may migrate the index: never the fixture
    library = PolicyLibrary(root)
    record = library.get("squat_poses")
    assert (record.clip_id, record.version, record.status) == ("sample/squat_poses", 1, "best_effort")
    assert record.config["schema"] == 2 and tuple(record.config["hidden"]) == (32, 32)
    report = library.verify()  # file hashes, then each checkpoint and reference loaded
    assert report.ok and report.checked == 1, report.broken

    policy = library.load_policy("squat_poses")
    obs = np.zeros((3, policy.observation_size), np.float32)
    actions = policy.act(obs)
    assert actions.shape == (3, policy.action_size) and np.isfinite(actions).all()
    trajectory = policy.rollout(seconds=0.2)
    assert trajectory.steps == 6 and np.isfinite(trajectory.body_pos).all()

    # The version directory alone (as `export` writes it) loads too.
    directory = root / record.path
    again = load_policy_directory(directory)
    assert json.loads((directory / "config.json").read_text())["schema"] == 2
    np.testing.assert_allclose(again.act(obs), actions, rtol=1e-6, atol=1e-6)
