"""Warm starts from similar clips: the motion signature and the donor pool, on small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from diffmimic.warmstart import motion_signature, nearest_donor, prune_pool, root_motion_distance, signature_distance

FPS = 30.0


def _motion(frames=90, speed=(1.0, 0.0), yaw0=0.0, offset=(0.0, 0.0), yaw_rate=0.0, crouch=0.0):
    """A rigid 3-body 'walker': pelvis moving at `speed` (heading frame), two legs below it."""
    t = np.arange(frames) / FPS
    yaw = yaw0 + yaw_rate * t
    c, s = np.cos(yaw), np.sin(yaw)
    velocity_world = np.stack([c * speed[0] - s * speed[1], s * speed[0] + c * speed[1]], -1)
    pelvis_xy = np.asarray(offset) + np.cumsum(velocity_world, 0) / FPS
    pelvis = np.concatenate([pelvis_xy, np.full((frames, 1), 0.9 - crouch)], -1)
    swing = 0.2 * np.sin(2 * np.pi * t)
    legs_local = np.stack(
        [
            np.stack([swing, np.full(frames, 0.1), np.full(frames, -0.8 + crouch)], -1),
            np.stack([-swing, np.full(frames, -0.1), np.full(frames, -0.8 + crouch)], -1),
        ],
        1,
    )
    legs_world = np.stack(
        [
            c[:, None] * legs_local[..., 0] - s[:, None] * legs_local[..., 1],
            s[:, None] * legs_local[..., 0] + c[:, None] * legs_local[..., 1],
            legs_local[..., 2],
        ],
        -1,
    )
    pos = np.concatenate([pelvis[:, None], pelvis[:, None] + legs_world], 1)
    quat = np.zeros((frames, 3, 4))
    quat[..., 0], quat[..., 3] = np.cos(yaw / 2)[:, None], np.sin(yaw / 2)[:, None]  # yaw about z
    return pos, quat


def test_signature_ignores_where_the_clip_is_and_which_way_it_faces():
    a = motion_signature(*_motion(), FPS)
    moved = motion_signature(*_motion(yaw0=2.0, offset=(5.0, -3.0)), FPS)
    assert a.shape == (3 * 6 + 10,)
    assert signature_distance(a, moved) < 1e-6


def test_signature_separates_direction_turning_and_crouching():
    forward = motion_signature(*_motion(), FPS)
    backward = motion_signature(*_motion(speed=(-1.0, 0.0)), FPS)
    sideways = motion_signature(*_motion(speed=(0.0, 1.0)), FPS)
    turning = motion_signature(*_motion(yaw_rate=1.0), FPS)
    crouched = motion_signature(*_motion(crouch=0.3), FPS)
    slower = motion_signature(*_motion(speed=(0.9, 0.0)), FPS)
    near = signature_distance(forward, slower)
    for other in (backward, sideways, turning, crouched):
        assert signature_distance(forward, other) > 3 * near
    assert signature_distance(forward, backward) > signature_distance(forward, slower)


def test_nearest_donor_within_the_distance_limit():
    forward = motion_signature(*_motion(), FPS)
    donors = [
        {"clip_id": "back", "signature": motion_signature(*_motion(speed=(-1.0, 0.0)), FPS)},
        {"clip_id": "slower", "signature": motion_signature(*_motion(speed=(0.9, 0.0)), FPS)},
    ]
    donor, distance = nearest_donor(forward, donors, max_distance_m=1.0)
    assert donor["clip_id"] == "slower" and distance == pytest.approx(
        signature_distance(forward, donors[1]["signature"])
    )
    assert nearest_donor(forward, donors, max_distance_m=distance / 2) == (None, distance)
    assert nearest_donor(forward, [])[0] is None
    with pytest.raises(ValueError):
        signature_distance(forward, forward[:-1])


def test_a_donor_moving_another_way_is_refused_however_near_its_poses():
    forward = motion_signature(*_motion(), FPS)
    backward = motion_signature(*_motion(speed=(-1.0, 0.0)), FPS)
    donors = [{"clip_id": "back", "signature": backward}]
    assert root_motion_distance(forward, backward) == pytest.approx(np.sqrt(2.0**2 / 10))
    assert nearest_donor(forward, donors, max_distance_m=10.0) == (None, float("inf"))
    donor, _ = nearest_donor(forward, donors, max_distance_m=10.0, max_root_distance_m=1.0)
    assert donor["clip_id"] == "back"


def test_pruned_pool_keeps_the_spread_out_donors():
    points = [np.array([0.0]), np.array([0.01]), np.array([1.0]), np.array([2.0]), np.array([2.02])]
    assert prune_pool(points, 10) == [0, 1, 2, 3, 4]
    assert prune_pool(points, 3) == [0, 2, 3]  # one of each close pair goes (the later)
