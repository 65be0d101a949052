"""Skill composition: policies chained in one simulation, entering at the nearest phase, with the
reference re-anchored, and falls reported."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def library(tmp_path_factory, trained, put_trained):
    from factory.library import PolicyLibrary

    library = PolicyLibrary(tmp_path_factory.mktemp("compose") / "lib", create=True)
    put_trained(library, "sample/squat_poses", trained["squat"], status="converged")
    put_trained(library, "sample/wave_poses", trained["wave"], status="converged")
    return library


def _yaw_rotation(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_reanchor_moves_the_clip_rigidly(trained):
    from factory.compose import heading_frame_pose, heading_yaw, pose_distances, reanchor

    reference = trained["wave"].reference
    frame = 17
    moved = reanchor(reference, frame, np.array([3.0, -2.0]), yaw=2.5)
    np.testing.assert_allclose(moved.body_pos[frame, 0, :2], [3.0, -2.0], atol=1e-9)
    assert heading_yaw(moved.body_rot[frame, 0]) == pytest.approx(2.5)
    assert heading_yaw(moved.qpos[frame, 3:7]) == pytest.approx(2.5)
    np.testing.assert_allclose(moved.body_pos[..., 2], reference.body_pos[..., 2])  # heights kept
    # one rigid motion for every frame: root-relative, heading-aligned poses are unchanged
    np.testing.assert_allclose(
        heading_frame_pose(moved.body_pos, moved.body_rot),
        heading_frame_pose(reference.body_pos, reference.body_rot),
        atol=1e-6,
    )
    turn = _yaw_rotation(2.5 - heading_yaw(reference.body_rot[frame, 0]))
    np.testing.assert_allclose(moved.body_vel, reference.body_vel @ turn.T, atol=1e-6)
    np.testing.assert_allclose(moved.qvel[:, :3], reference.qvel[:, :3] @ turn.T, atol=1e-6)
    np.testing.assert_allclose(moved.qpos[:, 7:], reference.qpos[:, 7:])  # joint angles untouched
    np.testing.assert_allclose(moved.qpos[:, :3], moved.body_pos[:, 0], atol=1e-5)
    # pose distance: zero at the frame itself, whatever the position and heading
    distances = pose_distances(moved.body_pos[frame], moved.body_rot[frame], reference)
    assert distances[frame] == pytest.approx(0.0, abs=1e-6)
    assert int(np.argmin(distances)) == frame


def test_compose_hands_over_the_simulated_state(library):
    from factory.compose import compose, heading_yaw, pose_distances

    # The nearest-pose rule, whose choice the trajectory alone shows (the state rule also weighs
    # velocities and feet: tests/factory/test_transitions.py).
    composition = compose(
        library, ["squat_poses", "wave_poses", "squat_poses"], seconds=[0.5, None, 0.5], handover="pose"
    )
    trajectory, segments = composition.trajectory, composition.segments
    assert [s.name for s in segments] == ["squat_poses", "wave_poses", "squat_poses"][: len(segments)]
    assert segments[0].start_step == 0 and segments[0].entry_frame == 0
    for before, after in zip(segments, segments[1:]):
        assert after.start_step == before.end_step
    assert trajectory.steps == segments[-1].end_step
    assert trajectory.body_pos.shape == (trajectory.steps + 1, 24, 3)

    # The first segment is the policy's own rollout from frame 0.
    single = library.load_policy("squat_poses").rollout(seconds=segments[0].end_s)
    np.testing.assert_allclose(trajectory.body_pos[: segments[0].end_step + 1], single.body_pos, atol=1e-5)

    assert len(segments) >= 2 and not segments[0].fell  # 0.5 s of the squat: no fall before the switch
    second = segments[1]
    handover = second.start_step
    pos, rot = trajectory.body_pos[handover], trajectory.body_rot[handover]
    # entered at the nearest phase (within the frames that leave min_segment_s)
    wave = library.load_policy("wave_poses").reference
    allowed = wave.num_frames - 1 - 30
    distances = pose_distances(pos, rot, wave)[: allowed + 1]
    assert second.entry_frame == int(np.argmin(distances))
    assert second.entry_distance_m == pytest.approx(float(distances.min()), abs=1e-6)
    # the reference was re-anchored at the character: its next frame is one step from the hand-over
    ref_root = trajectory.reference_body_pos[handover + 1, 0]
    assert np.linalg.norm(ref_root[:2] - pos[0, :2]) < 0.1
    assert (
        abs(np.angle(np.exp(1j * (heading_yaw(trajectory.reference_body_rot[handover + 1, 0]) - heading_yaw(rot[0])))))
        < 0.2
    )
    # the physics continued from the hand-over state (no reset): one 1/30 s step of motion
    step_motion = np.linalg.norm(trajectory.body_pos[handover + 1] - trajectory.body_pos[handover], axis=-1)
    assert step_motion.max() < 0.15


def compose_squat_wave_squat(library):
    from factory.compose import compose

    return compose(library, ["squat_poses", "wave_poses", "squat_poses"], seconds=[0.5, None, 0.5])


def _lifted(policy, height: float = 1.0):
    """The same policy tracking its clip 1 m in the air: an unreachable reference, so the
    character 'falls' (more than 0.5 m from its reference) right after taking over."""
    ref = policy.reference
    qpos = ref.qpos.copy()
    qpos[:, 2] += height
    body_pos = ref.body_pos.copy()
    body_pos[..., 2] += height
    record = dataclasses.replace(policy.record, clip_id="test/lifted", name="lifted")
    return dataclasses.replace(policy, reference=dataclasses.replace(ref, qpos=qpos, body_pos=body_pos), record=record)


def test_a_failed_transition_is_reported_not_hidden(library, tmp_path):
    from factory.compose import compose

    squat = library.load_policy("squat_poses")
    policies = {"squat": squat, "lifted": _lifted(squat)}
    composition = compose(library, ["squat", "lifted", "squat"], seconds=0.5, policies=policies)
    first = composition.segments[0]
    assert not first.fell  # 0.5 s of the squat: the switch happens
    second = composition.segments[1]
    assert second.fell and second.transition_fell
    assert second.start_s <= second.fell_at_s <= second.start_s + composition.transition_window_s
    assert composition.not_run == ("squat",) and len(composition.segments) == 2
    assert composition.trajectory.steps == second.end_step
    assert composition.trajectory.metrics.fell
    summary = composition.summary()
    assert summary["failed_transitions"] == 1 and summary["fell_in_segment"] == 2

    # with stop_on_fall=False the rest still runs, and the fall stays reported
    whole = compose(library, ["squat", "lifted", "squat"], seconds=0.5, policies=policies, stop_on_fall=False)
    assert len(whole.segments) == 3 and whole.segments[1].transition_fell and not whole.not_run

    saved = composition.save(tmp_path / "fall.npz")
    on_disk = json.loads((tmp_path / "fall.npz.json").read_text())
    assert on_disk["segments"][1]["transition_fell"] is True and on_disk["not_run"] == ["squat"]
    from diffmimic.rollout import Trajectory

    loaded, meta = Trajectory.load(saved)
    np.testing.assert_array_equal(loaded.body_pos, composition.trajectory.body_pos)
    assert meta["title"] == composition.title


def test_transition_pairs_and_cli(library, tmp_path, capsys):
    from factory.compose import main, transition_pairs

    result = transition_pairs(library, ["squat_poses", "wave_poses"], seconds=0.5, progress=None)
    assert result["pairs"] == 2 and len(result["rows"]) == 2
    assert result["transitions"] + result["first_fell"] == 2
    assert result["transition_ok"] == sum(r["transition_ok"] for r in result["rows"])
    if result["transitions"]:
        assert result["transition_success_rate"] == result["transition_ok"] / result["transitions"]

    out = tmp_path / "sw.npz"
    assert main(["--root", str(library.root), "squat_poses", "wave_poses", "--seconds", "0.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "squat_poses" in printed and "transitions without a fall" in printed and out.is_file()
    assert main(["--root", str(library.root), "--pairs", "--seconds", "0.5", "--out", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["pairs"] == 2
    assert main(["--root", str(library.root), "nope", "--out", str(out)]) == 2
    assert main(["--root", str(library.root), "--out", str(out)]) == 2
    assert "no clip named 'nope'" in capsys.readouterr().err


def test_a_policy_tracks_its_reanchored_clip_like_the_original(library):
    """Tracking is invariant to where the clip is put and which way it faces (the observation is in
    the root's heading frame), so re-anchoring changes nothing but the place."""
    from diffmimic.rollout import rollout_policy
    from factory.compose import reanchor

    policy = library.load_policy("squat_poses")
    moved = reanchor(policy.reference, 0, np.array([2.0, -1.0]), yaw=2.0)
    runs = [
        rollout_policy(
            policy.config, policy.params, policy.normaliser, ref, seconds=0.5, character_config=policy.character_config
        )
        for ref in (policy.reference, moved)
    ]
    np.testing.assert_allclose(runs[1].pose_error_m, runs[0].pose_error_m, atol=5e-3)
    # the simulated root ends where the original run's root ends, carried by the same rigid motion
    from factory.compose import heading_yaw

    turn = _yaw_rotation(2.0 - heading_yaw(policy.reference.body_rot[0, 0]))[:2, :2]
    expected = turn @ (runs[0].body_pos[-1, 0, :2] - policy.reference.body_pos[0, 0, :2]) + [2.0, -1.0]
    np.testing.assert_allclose(runs[1].body_pos[-1, 0, :2], expected, atol=0.02)
