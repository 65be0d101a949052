"""Tunable numbers of the SMPL character: PD gains, torque limit, masses, contact."""

from __future__ import annotations

# PD gains (kp N*m/rad, kd N*m*s/rad) per joint group, as used by strong SMPL trackers.
# Keys are character body names; every body but the Pelvis (free root) has three hinges.
PD_GAINS: dict[str, tuple[float, float]] = {
    "L_Hip": (800.0, 80.0),
    "R_Hip": (800.0, 80.0),
    "L_Knee": (800.0, 80.0),
    "R_Knee": (800.0, 80.0),
    "L_Ankle": (800.0, 80.0),
    "R_Ankle": (800.0, 80.0),
    "L_Toe": (500.0, 50.0),
    "R_Toe": (500.0, 50.0),
    "Torso": (1000.0, 100.0),
    "Spine": (1000.0, 100.0),
    "Chest": (1000.0, 100.0),
    "Neck": (500.0, 50.0),
    "Head": (500.0, 50.0),
    "L_Thorax": (500.0, 50.0),
    "R_Thorax": (500.0, 50.0),
    "L_Shoulder": (500.0, 50.0),
    "R_Shoulder": (500.0, 50.0),
    "L_Elbow": (500.0, 50.0),
    "R_Elbow": (500.0, 50.0),
    "L_Wrist": (300.0, 30.0),
    "R_Wrist": (300.0, 30.0),
    "L_Hand": (300.0, 30.0),
    "R_Hand": (300.0, 30.0),
}
TORQUE_LIMIT_NM = 500.0

# Hinge order of each ball joint (axes of the body's rest frame: x forward, y left, z up). A ball
# "abc" is the local rotation Ra(q0) @ Rb(q1) @ Rc(q2). Euler angles are singular when the middle
# angle reaches +-90 degrees, so the middle axis is one that rarely turns that far: for the legs,
# spine and head the big flexion turns about y and goes first (knees bend ~150 degrees); for the
# arms, whose bones lie along y at rest, the middle axis is y, the bone's own twist.
LEG_TRUNK_ORDER = "yxz"
ARM_ORDER = "xyz"
HINGE_ORDER: dict[str, str] = {
    name: (ARM_ORDER if name.split("_")[-1] in ("Thorax", "Shoulder", "Elbow", "Wrist", "Hand") else LEG_TRUNK_ORDER)
    for name in PD_GAINS
}
