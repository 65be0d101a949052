"""Failure-directed start sampling: pure functions on small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from diffmimic.curriculum import start_probabilities, trouble_from_evaluation, uniform_starts


def test_uniform_starts_leave_room_for_the_horizon():
    probs = uniform_starts(length=10, bucket=16, horizon=4)
    assert probs.shape == (16,) and probs.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(probs[:6], 1 / 6)  # frames 0..5 leave 4 steps before frame 9
    assert not probs[6:].any()
    # A clip shorter than the horizon starts at frame 0 only.
    np.testing.assert_array_equal(uniform_starts(3, 8, 30), np.eye(8)[0])
    with pytest.raises(ValueError):
        uniform_starts(20, 16, 4)


def test_trouble_is_squared_error_up_to_the_fall_and_the_fall_frame_dominates():
    errors = np.array([0.1, 0.1, 0.2, 0.3, 0.6, 0.9, 1.2])  # entry i: frame i + 1
    trouble = trouble_from_evaluation(errors, fell_at_frame=5, length=8)
    assert trouble.shape == (8,) and trouble[0] == 0.0
    np.testing.assert_allclose(trouble[1:5], errors[:4] ** 2)
    assert not trouble[6:].any()  # after the fall the rollout says nothing
    # fall_weight 1: as much as all the frames before, or its own squared error if larger
    assert trouble[5] == pytest.approx(max(trouble[:5].sum(), errors[4] ** 2))
    # No fall: every frame keeps its squared error; NaN counts as a large error, not a crash.
    no_fall = trouble_from_evaluation(np.array([0.1, np.nan, 0.2]), None, length=4)
    np.testing.assert_allclose(no_fall, [0.0, 0.01, 1.0, 0.04])


def test_starts_move_to_just_before_the_trouble():
    length, bucket, horizon = 100, 128, 20
    trouble = np.zeros(length)
    trouble[70] = 1.0  # one hard frame
    probs = start_probabilities(length, bucket, horizon, trouble, focus_share=0.5, lead_fraction=0.5)
    assert probs.sum() == pytest.approx(1.0) and (probs >= 0).all()
    uniform = uniform_starts(length, bucket, horizon)
    focus = probs - 0.5 * uniform
    # Focus mass exactly on starts 60..69: their first 10 steps meet frame 70.
    assert np.flatnonzero(focus > 1e-12).tolist() == list(range(60, 70))
    assert focus.sum() == pytest.approx(0.5)
    # Frames past the uniform range (79+) get no uniform mass but can be focus starts.
    trouble_late = np.zeros(length)
    trouble_late[95] = 1.0
    late = start_probabilities(length, bucket, horizon, trouble_late, focus_share=1.0)
    assert late[85:95].sum() == pytest.approx(1.0)
    assert not late[length - 1 :].any()  # never start at the last frame or in the padding


def test_no_trouble_or_no_focus_is_plain_rsi():
    uniform = uniform_starts(50, 64, 10)
    np.testing.assert_array_equal(start_probabilities(50, 64, 10, None), uniform)
    np.testing.assert_array_equal(start_probabilities(50, 64, 10, np.zeros(50)), uniform)
    np.testing.assert_array_equal(start_probabilities(50, 64, 10, np.ones(50), focus_share=0.0), uniform)
    with pytest.raises(ValueError):
        start_probabilities(50, 64, 10, -np.ones(50))
    with pytest.raises(ValueError):
        start_probabilities(50, 64, 10, np.ones(49))


def _evaluation(pose_error_m: float, fell_at_s: float | None = None, robust: bool | None = None):
    """`robust`: None for an evaluation whose perturbed rollouts were not run, else whether they passed."""
    from diffmimic.metrics import EvalMetrics

    return EvalMetrics(
        pose_error_m=pose_error_m,
        global_error_m=pose_error_m,
        fell=fell_at_s is not None,
        fell_at_s=fell_at_s,
        absurdity={},
        nonfinite_steps=0,
        frames=10,
        robustness={} if robust is None else {"passed": robust, "survived": 10 if robust else 5, "rollouts": 10},
    )


def test_polishing_goes_on_past_convergence_until_the_polish_target_or_budget():
    from diffmimic.train import make_config, meets, polish_done

    config = make_config("cpu", polish_iterations=30, polish_pose_error_m=0.03)
    assert meets(_evaluation(0.039), 0.04) and not meets(_evaluation(0.039, fell_at_s=7.9), 0.04)
    assert not meets(_evaluation(0.041), 0.04)
    # Not converged yet: never stops on its own.
    assert not polish_done(config, None, 500, _evaluation(0.01, fell_at_s=2.0))
    # Converged at 200 with 0.038: goes on until 230, unless the best reaches 0.03 first, and that
    # best is robust (its perturbed rollouts passed: an unchecked or fragile one does not stop it).
    assert not polish_done(config, 200, 200, _evaluation(0.038, robust=True))
    assert not polish_done(config, 200, 225, _evaluation(0.034, robust=True))
    assert polish_done(config, 200, 215, _evaluation(0.029, robust=True))
    assert not polish_done(config, 200, 215, _evaluation(0.029))
    assert not polish_done(config, 200, 215, _evaluation(0.029, robust=False))
    assert polish_done(make_config("cpu", robust_rollouts=0), 200, 215, _evaluation(0.029))
    assert polish_done(config, 200, 230, _evaluation(0.034))
    # A later evaluation that fell is never the best, so a fall during polishing does not stop it
    # early; with no polishing the first success stops.
    assert not polish_done(config, 200, 205, _evaluation(0.05, fell_at_s=8.0))
    assert polish_done(make_config("cpu", polish_iterations=0), 200, 200, _evaluation(0.038))
    with pytest.raises(ValueError, match="polish"):
        make_config("cpu", polish_iterations=-1)


def test_polishing_evaluates_at_its_own_cadence_from_the_first_success():
    from diffmimic.train import evaluation_due, make_config

    config = make_config("cpu", iterations=300)  # eval_every 5, polish_eval_every 1
    assert config.eval_every == 5 and config.polish_eval_every == 1
    # Before the first success: every 5 iterations, and after the last one.
    assert [i for i in range(1, 21) if evaluation_due(config, i, None)] == [5, 10, 15, 20]
    assert evaluation_due(make_config("cpu", iterations=298), 298, None)
    # Converged at 150: every iteration from then on.
    assert all(evaluation_due(config, i, 150) for i in range(151, 160))
    # polish_eval_every 0 keeps eval_every while polishing (the `paper` preset's default).
    paper = make_config("paper")
    assert paper.polish_eval_every == 0
    assert [i for i in range(1, 41) if evaluation_due(paper, i, 10)] == [10, 20, 30, 40]
    with pytest.raises(ValueError, match="polish"):
        make_config("cpu", polish_eval_every=-1)


def test_long_clips_are_evaluated_less_often_while_polishing():
    from diffmimic.train import evaluation_due, make_config, polish_eval_cadence

    config = make_config("cpu")  # 16 envs x 90 steps = 1,440 simulated steps per iteration
    # An evaluation rolls out the current and the averaged parameters over the whole clip.
    assert polish_eval_cadence(config, 250) == 1  # 8 s
    assert polish_eval_cadence(config, 721) == 1  # 24 s: 2 x 720 steps
    assert polish_eval_cadence(config, 722) == 2
    assert polish_eval_cadence(config, 1800) == 3  # 60 s
    assert polish_eval_cadence(make_config("cpu", ema_decay=0.0), 1441) == 1
    assert polish_eval_cadence(make_config("paper"), 1800) == 10  # its own cadence is longer
    assert [i for i in range(151, 160) if evaluation_due(config, i, 150, 1800)] == [153, 156, 159]
    # Before the first success the cadence is eval_every, whatever the length.
    assert [i for i in range(1, 11) if evaluation_due(config, i, None, 1800)] == [5, 10]
