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
    assert not late[length - 1:].any()  # never start at the last frame or in the padding


def test_no_trouble_or_no_focus_is_plain_rsi():
    uniform = uniform_starts(50, 64, 10)
    np.testing.assert_array_equal(start_probabilities(50, 64, 10, None), uniform)
    np.testing.assert_array_equal(start_probabilities(50, 64, 10, np.zeros(50)), uniform)
    np.testing.assert_array_equal(start_probabilities(50, 64, 10, np.ones(50), focus_share=0.0), uniform)
    with pytest.raises(ValueError):
        start_probabilities(50, 64, 10, -np.ones(50))
    with pytest.raises(ValueError):
        start_probabilities(50, 64, 10, np.ones(49))
