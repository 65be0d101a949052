"""Contact-aware retargeting: the whole body's lowest point and centre of mass, flight detection
and the support shift that puts a body in support on the floor (issue 28), on small arrays and
on a real clip whose skeleton is not its performer's."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from diffmimic.character.character import make_character
from diffmimic.character.skeleton import BODY_NAMES
from diffmimic.mocap.readers import load_motion
from diffmimic.mocap.retarget import (
    GRAVITY_M_S2,
    SUPPORT_TOLERANCE_M,
    flight_frames,
    lowest_foot_points,
    retarget,
    support_shift,
)

FPS = 30.0


@pytest.fixture(scope="module")
def character():
    return make_character()


def _pose(character, root_height: float, root_wxyz=(1.0, 0.0, 0.0, 0.0)):
    qpos = np.zeros((1, character.nq))
    qpos[0, 2], qpos[0, 3:7] = root_height, root_wxyz
    return qpos


def _bodies(character, qpos):
    pos, rot, _, _ = character.forward_kinematics(qpos, np.zeros((len(qpos), character.nv)))
    return pos, rot


def test_lowest_point_is_a_foot_standing_and_the_head_upside_down(character):
    standing = _pose(character, 1.0)
    pos, rot = _bodies(character, standing)
    point, owner = character.lowest_points(pos, rot)
    assert BODY_NAMES[owner[0]] in ("L_Ankle", "R_Ankle", "L_Toe", "R_Toe")
    # Standing, the whole body's lowest point is the feet's (the foot boxes' own corners).
    np.testing.assert_allclose(point[0, 2], lowest_foot_points(character, pos, rot)[0, 2], atol=1e-9)
    flipped = _pose(character, 1.0, root_wxyz=(0.0, 1.0, 0.0, 0.0))  # half a turn about x
    pos, rot = _bodies(character, flipped)
    point, owner = character.lowest_points(pos, rot)
    assert BODY_NAMES[owner[0]] == "Head", BODY_NAMES[owner[0]]
    # The lowest point of the head geom, checked against MuJoCo's own geom placement.
    model = character.sys.mj_model
    data = mujoco.MjData(model)
    data.qpos[:] = flipped[0]
    mujoco.mj_forward(model, data)
    head = [g for g in range(model.ngeom) if model.geom_bodyid[g] == BODY_NAMES.index("Head") + 1]
    assert len(head) == 1 and model.geom_type[head[0]] == mujoco.mjtGeom.mjGEOM_SPHERE
    np.testing.assert_allclose(point[0, 2], data.geom_xpos[head[0], 2] - model.geom_size[head[0], 0], atol=1e-6)


def test_center_of_mass_is_mujocos(character):
    qpos = _pose(character, 0.9, root_wxyz=(np.cos(0.3), np.sin(0.3), 0.0, 0.0))
    qpos[0, 7:] = np.linspace(-0.4, 0.4, character.nq - 7)  # an arbitrary pose of every hinge
    pos, rot = _bodies(character, qpos)
    model = character.sys.mj_model
    data = mujoco.MjData(model)
    data.qpos[:] = qpos[0]
    mujoco.mj_forward(model, data)
    np.testing.assert_allclose(character.center_of_mass(pos, rot)[0], data.subtree_com[0], atol=1e-6)


def _jump(frames: int = 90, start: int = 30, flight_s: float = 0.4):
    """A body standing on the floor that jumps once: centre of mass and lowest point heights."""
    t = np.arange(frames) / FPS
    com = np.full(frames, 0.95)
    lowest = np.zeros(frames)
    takeoff = start / FPS
    airborne = (t > takeoff) & (t < takeoff + flight_s)
    rise = 0.5 * GRAVITY_M_S2 * flight_s * (t - takeoff) - 0.5 * GRAVITY_M_S2 * (t - takeoff) ** 2
    com[airborne] += rise[airborne]
    lowest[airborne] = rise[airborne]
    return com, lowest, airborne


def test_a_free_fall_is_a_flight_and_standing_is_not():
    com, lowest, airborne = _jump()
    flight = flight_frames(com, lowest, FPS)
    # The airborne frames higher than the tolerance are all flight; standing frames well away
    # from the jump are not.
    assert flight[airborne & (lowest > SUPPORT_TOLERANCE_M)].all()
    assert not flight[:20].any() and not flight[-20:].any()
    assert not flight_frames(np.full(60, 0.95), np.full(60, 0.08), FPS).any()


def test_a_grounded_jump_keeps_its_flight():
    com, lowest, _ = _jump()
    shift = support_shift(lowest, flight_frames(com, lowest, FPS), FPS)
    assert np.abs(shift).max() < 1e-3, np.abs(shift).max()


def test_a_floating_body_is_lowered_to_the_floor_and_its_jump_kept():
    """Standing 8 cm above the floor before a jump and 5 cm after it (a root-height drift): the
    stances are lowered to the tolerance, the flight between them keeps its shape."""
    com, lowest, airborne = _jump()
    drift = np.where(np.arange(len(com)) < 45, 0.08, 0.05)
    com, lowest = com + drift, lowest + drift
    flight = flight_frames(com, lowest, FPS)
    shift = support_shift(lowest, flight, FPS)
    settled = lowest - shift
    np.testing.assert_allclose(settled[:20], SUPPORT_TOLERANCE_M, atol=1e-6)
    np.testing.assert_allclose(settled[-20:], SUPPORT_TOLERANCE_M, atol=1e-6)
    # The flight's peak clears the floor by what it did on a level floor (0.196 m for 0.4 s).
    peak = settled[airborne].max()
    assert abs(peak - (0.125 * GRAVITY_M_S2 * 0.4**2 + SUPPORT_TOLERANCE_M)) < 0.03, peak
    assert np.abs(np.diff(shift)).max() * FPS < 0.5  # no jolt: the shift moves under 0.5 m/s


def test_a_body_in_the_floor_is_raised():
    lowest = np.full(40, -0.06)
    shift = support_shift(lowest, np.zeros(40, bool), FPS)
    np.testing.assert_allclose(lowest - shift, -SUPPORT_TOLERANCE_M, atol=1e-9)


def test_a_clip_on_another_subjects_skeleton_stands_on_the_floor(mocap_fixtures, character):
    """CMU 90_05 (acrobatics) ships with subject 08's ASF: grounded on its fitted floor alone it
    stands 8 cm above the floor for its last second; supported, its lowest point is on the floor
    wherever it is not in flight, and its flight (the jump in the middle) is kept."""
    motion = load_motion(mocap_fixtures / "varied_dev" / "cmu" / "90" / "90_05.amc")
    floating = retarget(motion, character, support=False)
    supported = retarget(motion, character)
    last_second = slice(-30, None)
    before = character.lowest_points(floating.body_pos[last_second], floating.body_rot[last_second])[0][:, 2]
    after = character.lowest_points(supported.body_pos[last_second], supported.body_rot[last_second])[0][:, 2]
    assert before.min() > 0.06, before.min()
    assert np.abs(after).max() < SUPPORT_TOLERANCE_M + 0.005, np.abs(after).max()
    np.testing.assert_allclose(supported.qpos[:, 2], floating.qpos[:, 2] - supported.support_shift, atol=1e-9)
    # The jump still leaves the floor by about as much as the source's.
    lowest = character.lowest_points(supported.body_pos, supported.body_rot)[0][:, 2]
    original = character.lowest_points(floating.body_pos, floating.body_rot)[0][:, 2]
    assert lowest.max() > 0.5 and abs(lowest.max() - original.max()) < 0.1
    # Velocities follow the shifted positions.
    central = (supported.qpos[2:, 2] - supported.qpos[:-2, 2]) * 15.0
    np.testing.assert_allclose(supported.qvel[1:-1, 2], central, atol=1e-6)
