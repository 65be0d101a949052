"""The policy library: put/get round trips with trained policies, names, queries, versions,
rollouts, verify and export, schema migrations."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3

import jax
import numpy as np
import pytest

import factory.library as library_module
from factory.library import (
    AmbiguousNameError,
    LibraryError,
    NotALibraryError,
    PolicyLibrary,
    UnknownNameError,
    check_clip_id,
    clip_id_for,
    load_policy_directory,
    sha256_file,
)


def _tree_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def test_put_get_round_trip_with_a_trained_policy(tmp_path, trained, put_trained):
    run = trained["squat"]
    library = PolicyLibrary(tmp_path / "lib", create=True)
    record = put_trained(library, "sample/squat_poses", run, status="converged", attempts=2)

    assert (record.clip_id, record.version, record.name, record.dataset) == (
        "sample/squat_poses",
        1,
        "squat_poses",
        "sample",
    )
    # A real Orbax checkpoint on disk, beside the reference and the training record.
    directory = library.root / record.path
    assert (directory / "checkpoint" / "_CHECKPOINT_METADATA").is_file()
    for name in ("reference.npz", "config.json", "policy.json", "metrics.jsonl", "result.json", "meta.json"):
        assert (directory / name).is_file(), name
    assert json.loads((directory / "meta.json").read_text())["version"] == 1

    # Reopen from the path alone: every field comes back from the index.
    reopened = PolicyLibrary(tmp_path / "lib")
    got = reopened.get("sample/squat_poses")
    assert got == record
    assert got.status == "converged" and got.attempts == 2
    assert got.pose_error_m == pytest.approx(run.result.metrics.pose_error_m)
    assert got.initial_pose_error_m == pytest.approx(run.result.initial_metrics.pose_error_m)
    assert got.fell == run.result.metrics.fell
    assert got.pose_absurdity == run.result.metrics.absurdity
    assert got.samples == run.result.samples and got.iterations == run.config.iterations
    assert got.train_s == pytest.approx(run.result.train_s)
    assert got.history == run.result.history and len(got.history) == 1
    assert got.config == json.loads(json.dumps(run.config.to_dict()))
    assert got.source_path == str(run.source) and got.source_sha256 == sha256_file(run.source)
    assert (got.frames, got.fps, got.skeleton) == (120, 30.0, "smpl_neutral")
    assert got.duration_s == pytest.approx(119 / 30)
    assert got.backend == "spring" and got.character["total_mass_kg"] == 70.0
    # The row holds the body as simulated: the backend's tuning and the timestep applied.
    from diffmimic.physics import backend_character
    from diffmimic.train import compiled_functions
    from factory.library.runtime import character_dict

    simulated = compiled_functions(run.config).env.character
    assert got.character == character_dict(simulated.config)
    assert dict(got.character["brax_custom"])["spring_inertia_scale"] == pytest.approx(0.8)
    assert got.character["timestep_s"] == pytest.approx(run.config.env.timestep_s)
    assert backend_character("spring", base=simulated.config).mjcf == simulated.mjcf
    assert got.code_version and got.created_at.endswith("+00:00")
    assert reopened.get("squat_poses") == record  # the unique short name

    policy = reopened.load_policy("squat_poses")
    assert _tree_equal(policy.params, run.result.params)
    assert _tree_equal(policy.normaliser, run.result.normaliser)
    assert not _tree_equal(policy.params, trained["wave"].result.params)  # another run, another seed
    np.testing.assert_array_equal(policy.reference.qpos, run.reference.qpos)
    np.testing.assert_array_equal(policy.reference.body_pos, run.reference.body_pos)
    assert policy.config == run.config
    assert policy.character_config == simulated.config

    # act() is the trained network on a real observation, single and batched.
    from diffmimic.env import ref_arrays
    from diffmimic.policy import make_policy_network

    env = policy.env
    ref = ref_arrays(run.reference)
    obs = np.stack([np.asarray(env.observe(env.reset(ref, jax.random.PRNGKey(0), frame=f), ref)) for f in (3, 40)])
    _, apply = make_policy_network(env.observation_size, env.action_size, run.config.hidden)
    expected = np.asarray(apply(run.result.params, run.result.normaliser, obs[0]))
    np.testing.assert_allclose(policy.act(obs[0]), expected, rtol=1e-5, atol=1e-6)
    assert policy.act(obs).shape == (2, env.action_size)
    np.testing.assert_allclose(policy.act(obs)[0], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="observations must have"):
        policy.act(np.zeros(5))


def test_versions_are_kept_and_get_returns_the_newest(small_library, trained):
    versions = small_library.versions("sample/squat_poses")
    assert [(r.version, r.status, r.attempts) for r in versions] == [(1, "best_effort", 1), (2, "converged", 2)]
    assert small_library.get("sample/squat_poses").version == 2
    assert small_library.get("sample/squat_poses", version=1).status == "best_effort"
    assert all((small_library.root / r.path / "checkpoint").is_dir() for r in versions)
    assert _tree_equal(
        small_library.load_policy("sample/squat_poses", version=1).params, trained["squat"].result.params
    )
    with pytest.raises(UnknownNameError, match="no version 7"):
        small_library.get("sample/squat_poses", version=7)


def test_ambiguous_and_unknown_names(small_library):
    with pytest.raises(AmbiguousNameError) as err:
        small_library.get("squat_poses")
    message = str(err.value)
    assert "ambiguous" in message and "other/mocap/squat_poses" in message and "sample/squat_poses" in message
    # A longer suffix of the path disambiguates, so does the full clip id.
    assert small_library.get("mocap/squat_poses").clip_id == "other/mocap/squat_poses"
    assert small_library.get("wave_poses").clip_id == "sample/wave_poses"

    with pytest.raises(UnknownNameError) as err:
        small_library.get("wave_pose")
    assert "no clip named 'wave_pose'" in str(err.value) and "did you mean sample/wave_poses" in str(err.value)
    with pytest.raises(UnknownNameError, match="no clip named 'backflip'"):
        small_library.load_policy("backflip")
    assert isinstance(UnknownNameError("x"), KeyError) and isinstance(UnknownNameError("x"), LibraryError)


def test_query_filters(small_library):
    ids = lambda records: [r.clip_id for r in records]
    assert ids(small_library.query()) == [
        "other/mocap/squat_poses",
        "sample/squat_poses",
        "sample/torso_twist_poses",
        "sample/wave_poses",
    ]
    assert len(small_library) == 4
    assert ids(small_library.query(dataset="sample", status="converged")) == ["sample/squat_poses", "sample/wave_poses"]
    assert ids(small_library.query(status="failed")) == ["sample/torso_twist_poses"]
    assert ids(small_library.query(status=["failed", "best_effort"])) == [
        "other/mocap/squat_poses",
        "sample/torso_twist_poses",
    ]
    assert ids(small_library.query(name_glob="*squat*")) == ["other/mocap/squat_poses", "sample/squat_poses"]
    assert ids(small_library.query(name_glob="other/*")) == ["other/mocap/squat_poses"]
    assert ids(small_library.query(limit=2)) == ["other/mocap/squat_poses", "sample/squat_poses"]
    assert len(small_library.query(all_versions=True)) == 5
    errors = sorted(r.pose_error_m for r in small_library.query() if r.pose_error_m is not None)
    threshold = errors[0]
    assert all(r.pose_error_m <= threshold for r in small_library.query(max_pose_error_m=threshold))
    assert len(small_library.query(max_pose_error_m=threshold)) >= 1
    assert small_library.query(max_pose_error_m=-1.0) == []
    with pytest.raises(LibraryError, match="unknown status 'done'"):
        small_library.query(status="done")


def test_failed_clips_have_a_row_but_no_checkpoint(small_library):
    record = small_library.get("torso_twist_poses")
    assert record.status == "failed" and record.attempts == 3 and record.path is None
    assert record.error == "non-finite loss in every attempt"
    with pytest.raises(LibraryError, match="failed .*no checkpoint"):
        small_library.load_policy("torso_twist_poses")


def test_rollout_simulates_the_policy(small_library, trained):
    from diffmimic.train import compiled_functions

    run = trained["squat"]
    policy = small_library.load_policy("sample/squat_poses")
    full = policy.rollout()  # the whole clip from frame 0: the trainer's evaluation rollout
    assert full.steps == 119 and full.body_pos.shape == (120, 24, 3) and full.qpos.shape[0] == 120
    assert np.isfinite(full.body_pos).all() and np.isfinite(full.pose_error_m).all()
    assert full.metrics.pose_error_m == pytest.approx(run.result.metrics.pose_error_m, rel=1e-3, abs=1e-4)
    assert full.metrics.fell == run.result.metrics.fell
    np.testing.assert_allclose(full.reference_body_pos, run.reference.body_pos, atol=1e-6)
    # The state is simulated, not replayed: it differs from the reference after the first frame.
    np.testing.assert_allclose(full.body_pos[0], run.reference.body_pos[0], atol=1e-4)
    assert np.abs(full.body_pos[1:] - full.reference_body_pos[1:]).max() > 1e-3

    part = policy.rollout(seconds=1.0, start_frame=30)
    assert part.steps == 30 and part.start_frame == 30 and part.pose_error_m.shape == (30,)
    np.testing.assert_allclose(part.body_pos[0], run.reference.body_pos[30], atol=1e-4)

    # A second policy with the same config reuses the compiled rollout (training's evaluation
    # runs the same rollout function).
    traces = compiled_functions(run.config).trace_counts
    before = traces["rollout"]
    assert before >= 1
    wave = small_library.load_policy("wave_poses").rollout(seconds=0.5)
    assert wave.steps == 15 and traces["rollout"] == before

    with pytest.raises(ValueError, match="start_frame"):
        policy.rollout(start_frame=119)


def test_rollout_beyond_the_clip_loops_it(tmp_path, trained):
    # A 2 s piece of the squat (61 frames) stored as its own clip: a 3 s rollout loops it. (The
    # policy was trained on the whole squat, whose first 2 s this is; the shorter clip keeps the
    # looped reference in the 128-frame bucket that the other rollouts already compiled.)
    run = trained["squat"]
    library = PolicyLibrary(tmp_path / "lib", create=True)
    short = run.reference.segment(0.0, 2.0)
    library.put(
        "sample/squat_first_2s",
        reference=short,
        params=run.result.params,
        normaliser=run.result.normaliser,
        config=run.config,
        status="best_effort",
    )
    trajectory = library.load_policy("squat_first_2s").rollout(seconds=3.0)
    assert trajectory.steps == 90 and trajectory.body_pos.shape == (91, 24, 3)
    assert np.isfinite(trajectory.pose_error_m).all()
    # The looped reference repeats the clip: frame 60 + k matches frame k (re-anchored in x, y).
    looped = trajectory.reference_body_pos
    np.testing.assert_allclose(looped[61:91, :, 2], short.body_pos[1:31, :, 2], atol=1e-5)
    path = trajectory.save(tmp_path / "traj.npz")
    with np.load(path, allow_pickle=False) as data:
        assert data["body_pos"].shape == (91, 24, 3) and data["pose_error_m"].shape == (90,)
        assert data["times_s"][-1] == pytest.approx(3.0)


def test_verify_detects_a_corrupted_and_a_missing_checkpoint(small_library):
    report = small_library.verify()
    assert report.ok and report.checked == 4 and report.leftovers == []

    wave = small_library.get("wave_poses")
    data_files = sorted((small_library.root / wave.path / "checkpoint").rglob("d/*"))
    victim = max((p for p in data_files if p.is_file()), key=lambda p: p.stat().st_size)
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    victim.write_bytes(bytes(blob))
    squat_v1 = small_library.get("sample/squat_poses", version=1)
    shutil.rmtree(small_library.root / squat_v1.path / "checkpoint")

    report = small_library.verify()
    assert not report.ok and report.checked == 4
    broken = dict(report.broken)
    assert set(broken) == {"sample/wave_poses@1", "sample/squat_poses@1"}
    assert "differ from their index hash" in broken["sample/wave_poses@1"]
    assert "missing" in broken["sample/squat_poses@1"]
    # Loading (without the hash check) notices the missing checkpoint too.
    with pytest.raises(Exception):
        small_library.load_policy("sample/squat_poses", version=1)
    with pytest.raises(LibraryError, match="broken, not exported"):
        small_library.export("wave_poses", small_library.root.parent / "export")


def test_export_is_self_contained(small_library, trained, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(LibraryError, match="not empty"):
        small_library.export("wave_poses", tmp_path / "full")
    out = small_library.export("wave_poses", tmp_path / "wave_export")
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert "checkpoint/_CHECKPOINT_METADATA" in sums and "reference.npz" in sums
    assert all(sha256_file(out / rel) == digest for rel, digest in sums.items())
    shutil.rmtree(small_library.root)  # the copy needs nothing from the library
    policy = load_policy_directory(out)
    assert policy.record.clip_id == "sample/wave_poses" and policy.record.version == 1
    assert _tree_equal(policy.params, trained["wave"].result.params)
    np.testing.assert_array_equal(policy.reference.qpos, trained["wave"].reference.qpos)


def test_index_is_sqlite_in_wal_mode_and_not_a_library_is_refused(small_library, tmp_path):
    with sqlite3.connect(small_library.index_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(library_module.schema_version(),)]
    with pytest.raises(NotALibraryError, match="does not exist"):
        PolicyLibrary(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotALibraryError, match="has no index.sqlite"):
        PolicyLibrary(tmp_path / "plain")
    (tmp_path / "plain" / "index.sqlite").write_text("not a database, just text " * 100)
    with pytest.raises(NotALibraryError, match="not a policy library"):
        PolicyLibrary(tmp_path / "plain")
    with pytest.raises(NotALibraryError, match="filesystem path"):
        PolicyLibrary("gs://bucket/library")


def test_schema_migrations(small_library, monkeypatch):
    root = small_library.root
    # A newer schema than the code knows is refused, naming both versions.
    with sqlite3.connect(small_library.index_path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(LibraryError, match="schema version 99 is newer than this code supports"):
        PolicyLibrary(root)
    current = library_module.index.schema_version()
    with sqlite3.connect(small_library.index_path) as db:
        db.execute(f"UPDATE schema_version SET version = {current}")

    # A new migration upgrades an existing library in place and keeps its rows.
    def add_notes(db):
        db.execute("ALTER TABLE policies ADD COLUMN notes TEXT")

    monkeypatch.setattr(library_module.index, "MIGRATIONS", [*library_module.index.MIGRATIONS, add_notes])
    upgraded = PolicyLibrary(root)
    with sqlite3.connect(upgraded.index_path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(current + 1,)]
        assert "notes" in [r[1] for r in db.execute("PRAGMA table_info(policies)")]
    assert upgraded.get("wave_poses").status == "converged" and len(upgraded) == 4


def test_clip_ids(tmp_path):
    assert clip_id_for("amass", tmp_path, tmp_path / "CMU" / "75" / "75_09_poses.npz") == "amass/CMU/75/75_09_poses"
    # A clip linked into the root from elsewhere is named by its link; a root reached through a
    # link names its clips as the real root does.
    elsewhere, root = tmp_path / "elsewhere", tmp_path / "root"
    (elsewhere).mkdir()
    (root / "motions").mkdir(parents=True)
    (elsewhere / "slice.pkl").write_bytes(b"")
    (root / "motions" / "dance.pkl").symlink_to(elsewhere / "slice.pkl")
    assert clip_id_for("aistpp", root, root / "motions" / "dance.pkl") == "aistpp/motions/dance"
    (tmp_path / "linked_root").symlink_to(root)
    assert clip_id_for("aistpp", tmp_path / "linked_root", root / "motions" / "dance.pkl") == "aistpp/motions/dance"
    for bad in ("squat", "sample/../x", "/abs/x", "sample//x", "sample/v0001/x", "sample/a;b"):
        with pytest.raises(LibraryError, match="clip id"):
            check_clip_id(bad)


def test_put_rejects_bad_input(tmp_path, trained):
    run = trained["squat"]
    library = PolicyLibrary(tmp_path / "lib", create=True)
    with pytest.raises(LibraryError, match="status must be"):
        library.put_result("sample/squat_poses", run.result, run.config, run.reference, status="failed")
    with pytest.raises(LibraryError, match="hidden widths"):
        library.put_result(
            "sample/squat_poses",
            run.result,
            dataclasses.replace(run.config, hidden=(64, 64)),
            run.reference,
            status="converged",
        )
    assert len(library) == 0 and library.leftovers() == []


def test_the_library_rollout_replays_the_training_evaluation_exactly(tmp_path, trained, put_trained):
    """Training judged each policy by one rollout from frame 0; the library's replay of the
    stored policy is that rollout: the same falls and the same per-frame errors."""
    library = PolicyLibrary(tmp_path / "lib", create=True)
    for name, run in trained.items():
        put_trained(library, f"sample/{name}_poses", run)
        replay = library.load_policy(f"sample/{name}_poses").rollout()
        evaluation = run.result.metrics
        assert replay.metrics.fell == evaluation.fell and replay.metrics.fell_at_s == evaluation.fell_at_s
        np.testing.assert_allclose(replay.pose_error_m, evaluation.per_frame_pose_error_m, rtol=0, atol=1e-6)
        assert replay.metrics.pose_error_m == pytest.approx(evaluation.pose_error_m, abs=1e-6)


def test_robustness_and_the_reason_are_recorded_and_rechecked(tmp_path, trained, put_trained):
    from diffmimic.robustness import Robustness

    run = trained["wave"]
    library = PolicyLibrary(tmp_path / "lib", create=True)
    checked = Robustness(rollouts=4, survived=1, fell_at_s=(1.2, 2.0, 2.4), pose_error_m=(0.05,) * 4, min_survival=0.9)
    result = dataclasses.replace(
        run.result, metrics=dataclasses.replace(run.result.metrics, robustness=checked.to_dict())
    )
    library.put_result(
        "sample/wave_poses",
        result,
        run.config,
        run.reference,
        status="best_effort",
        reason="fragile: 3 of 4 perturbed rollouts fell, first at 1.2 s",
    )
    record = PolicyLibrary(tmp_path / "lib").get("wave_poses")
    assert record.robustness == checked.to_dict() and record.robustness["passed"] is False
    assert record.reason == "fragile: 3 of 4 perturbed rollouts fell, first at 1.2 s"
    # The library re-checks a stored policy with real perturbed rollouts.
    again = library.load_policy("wave_poses").check_robustness(rollouts=2, seed=1)
    assert again.rollouts == 2 and len(again.pose_error_m) == 2 and again.min_survival == run.config.robust_min_survival
