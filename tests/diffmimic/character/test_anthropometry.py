"""Human body data in the character: de Leva segment masses, hinge ranges the simulation
enforces, per-joint torque limits, and the `ranges` report of what clips reach."""

from __future__ import annotations

import numpy as np
import pytest

from diffmimic.character import anthropometry
from diffmimic.character.__main__ import main
from diffmimic.character.character import make_character
from diffmimic.character.describe import describe
from diffmimic.character.mjcf import CharacterConfig
from diffmimic.character.skeleton import BODY_NAMES, NEUTRAL_REST_JOINTS_SMPL, Skeleton

HUMAN = CharacterConfig(mass_distribution="de_leva", joint_ranges=True, torque_limits="human")


def _segment_masses(character) -> dict[str, float]:
    masses: dict[str, float] = {}
    for body in describe(character, "mjx").bodies:
        key = anthropometry.segment_key(body.name)
        masses[key] = masses.get(key, 0.0) + body.model_mass_kg
    return masses


def test_segment_masses_follow_de_leva_and_scale_with_the_body():
    assert sum(
        anthropometry.segment_percent(anthropometry.segment_key(b))
        for b in {anthropometry.segment_key(b): b for b in BODY_NAMES}.values()
    ) == pytest.approx(100.0, abs=0.05)
    masses = _segment_masses(make_character(config=HUMAN))
    assert sum(masses.values()) == pytest.approx(70.0, rel=1e-3)
    for key, mass in masses.items():
        assert mass == pytest.approx(70.0 * anthropometry.segment_percent(key) / 100, rel=0.01), key
    # The uniform density is far off de Leva (the figures): the thigh gets about half.
    uniform = _segment_masses(make_character())
    assert uniform["L_thigh"] < 0.6 * masses["L_thigh"] and uniform["L_foot"] > 1.5 * masses["L_foot"]
    # A bigger skeleton (every bone 10 % longer) weighs more, with the same shares.
    big = _segment_masses(make_character(Skeleton(NEUTRAL_REST_JOINTS_SMPL * 1.1, name="big"), HUMAN))
    assert sum(big.values()) > 1.05 * 70.0
    assert big["L_thigh"] / sum(big.values()) == pytest.approx(masses["L_thigh"] / 70.0, rel=1e-3)


def test_hinge_ranges_mirror_and_are_enforced_by_the_model():
    assert anthropometry.hinge_range_deg("R_Hip", "x") == tuple(
        -v for v in anthropometry.hinge_range_deg("L_Hip", "x")[::-1]
    )
    assert anthropometry.hinge_range_deg("R_Knee", "y") == anthropometry.hinge_range_deg("L_Knee", "y")
    knee_low, knee_high = anthropometry.hinge_range_deg("L_Knee", "y")
    assert knee_low < 0 < 120 < knee_high  # the knee bends one way
    model = make_character(config=HUMAN).sys.mj_model
    knee = model.joint("L_Knee_y")
    assert bool(model.jnt_limited[knee.id])
    assert np.degrees(model.jnt_range[knee.id]) == pytest.approx([knee_low, knee_high], abs=1e-3)
    assert not make_character().sys.mj_model.jnt_limited.any()


def test_torque_limits_follow_human_strength_per_joint_group():
    hinges = {h.name: h.torque_limit_nm for h in describe(make_character(config=HUMAN), "mjx").hinges}
    big = lambda group: [hinges[f"{b}_{a}"] for b in anthropometry.JOINT_GROUPS[group] for a in "y"]
    assert all(100 <= t <= 300 for g in ("hips", "knees", "ankles") for t in big(g))
    assert all(10 <= hinges[f"{b}_{a}"] <= 100 for b in ("L_Shoulder", "R_Elbow") for a in "xyz")
    assert all(hinges[f"{b}_{a}"] <= 20 for b in ("L_Wrist", "R_Hand", "L_Toe") for a in "xyz")
    with pytest.raises(ValueError, match="torque_limits"):
        make_character(config=CharacterConfig(torque_limits="superhuman"))


def test_ranges_cli_reports_extremes_and_frames_outside(tmp_path, capsys):
    from diffmimic.mocap.sample import write_sample_dataset

    write_sample_dataset(tmp_path)
    assert main(["ranges", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "frames; hinge" in out and "L_Knee_y" in out
    assert main(["ranges", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_retargeting_clamps_into_the_ranges_and_counts(tmp_path):
    from diffmimic.mocap.motion import Motion
    from diffmimic.mocap.retarget import Reference, clamp_hinges, retarget

    angles, counts = clamp_hinges(np.array([[-2.0, 0.5, 3.0], [0.0, 0.0, 0.0]]), np.full(3, -1.0), np.full(3, 1.0))
    np.testing.assert_array_equal(angles, [[-1.0, 0.5, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(counts, [2, 0])

    # Upright and still, but the left knee (SMPL joint 4) bent 2.5 rad one way, then the other:
    # one of the two is far outside the knee's range whatever the sign convention.
    frames = 40
    rotations = np.zeros((frames, 24, 3))
    rotations[:, 0, 0] = np.pi / 2  # SMPL's Y-up body frame into the Z-up world
    rotations[:, 4, 0] = np.where(np.arange(frames) < frames // 2, 2.5, -2.5)
    motion = Motion(
        rotations=rotations,
        root_position=np.tile([0.0, 0.0, 0.95], (frames, 1)),
        fps=30.0,
        source="synthetic-knee",
        format="amass_smplx",
    )
    raw = retarget(motion, make_character(), fps=30.0)
    human = retarget(motion, make_character(config=HUMAN), fps=30.0)
    low, high = anthropometry.hinge_ranges_rad()
    outside = (raw.qpos[:, 7:] < low) | (raw.qpos[:, 7:] > high)
    assert raw.clamped is None and raw.clamped_values == 0
    assert human.clamped_values == outside.sum() >= frames // 2
    np.testing.assert_array_equal(human.clamped, outside.sum(1))
    assert np.all((human.qpos[:, 7:] >= low - 1e-9) & (human.qpos[:, 7:] <= high + 1e-9))
    np.testing.assert_array_equal(human.qpos[:, 7:][~outside], raw.qpos[:, 7:][~outside])
    # The body states are those of the clamped pose: the knee moves, the pelvis does not.
    assert not np.allclose(human.body_pos[:, BODY_NAMES.index("L_Ankle")], raw.body_pos[:, BODY_NAMES.index("L_Ankle")])
    # Kept through a file and a segment.
    loaded = Reference.load(human.save(tmp_path / "ref.npz"))
    np.testing.assert_array_equal(loaded.clamped, human.clamped)
    assert human.segment(0.0, 0.3).clamped_values == human.clamped[:10].sum()


def test_the_human_body_is_a_config_choice_that_reaches_the_simulated_character():
    from diffmimic.env import EnvConfig
    from diffmimic.train import make_config, simulated_character, simulated_character_config

    config = make_config("cpu", env={"body": "human", "backend": "mjx", "substeps": 64})
    simulated = simulated_character_config(config)
    assert (simulated.mass_distribution, simulated.joint_ranges, simulated.torque_limits) == ("de_leva", True, "human")
    assert simulated.timestep_s == pytest.approx(1 / 1920) and simulated.solver_iterations == 1  # mjx's tuning
    assert simulated_character_config(config, simulated) == simulated  # idempotent: a library row reloads it
    uniform = simulated_character_config(make_config("cpu"))
    assert (uniform.mass_distribution, uniform.joint_ranges) == ("uniform", False)
    character = simulated_character(config)
    assert np.isfinite(np.asarray(character.sys.jnt_range)[1:]).all() and character.config == simulated  # hinges
    with pytest.raises(ValueError, match="body"):
        EnvConfig(body="robot")
