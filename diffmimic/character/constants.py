"""Tunable numbers of the SMPL character: PD gains, torque limit, masses, contact."""

from __future__ import annotations

# PD gains (kp N*m/rad, kd N*m*s/rad) per joint group, as used by strong SMPL trackers.
# Keys are character body names; every body but the Pelvis (free root) has three hinges.
PD_GAINS: dict[str, tuple[float, float]] = {
    "L_Hip": (800.0, 80.0), "R_Hip": (800.0, 80.0),
    "L_Knee": (800.0, 80.0), "R_Knee": (800.0, 80.0),
    "L_Ankle": (800.0, 80.0), "R_Ankle": (800.0, 80.0),
    "L_Toe": (500.0, 50.0), "R_Toe": (500.0, 50.0),
    "Torso": (1000.0, 100.0), "Spine": (1000.0, 100.0), "Chest": (1000.0, 100.0),
    "Neck": (500.0, 50.0), "Head": (500.0, 50.0),
    "L_Thorax": (500.0, 50.0), "R_Thorax": (500.0, 50.0),
    "L_Shoulder": (500.0, 50.0), "R_Shoulder": (500.0, 50.0),
    "L_Elbow": (500.0, 50.0), "R_Elbow": (500.0, 50.0),
    "L_Wrist": (300.0, 30.0), "R_Wrist": (300.0, 30.0),
    "L_Hand": (300.0, 30.0), "R_Hand": (300.0, 30.0),
}
TORQUE_LIMIT_NM = 500.0
HINGE_AXES = ("x", "y", "z")  # hinge order within a ball: R = Rx(a) @ Ry(b) @ Rz(c)
