"""The SMPL skeleton: joint names, the kinematic tree and rest joint offsets.

SMPL works in a Y-up body frame (x to the body's left, y up, z forward). The simulated
character lives in a Z-up, X-forward world, so every SMPL vector ``v`` becomes
``SMPL_TO_CHARACTER @ v`` and every SMPL local rotation ``R`` becomes
``SMPL_TO_CHARACTER @ R @ SMPL_TO_CHARACTER.T`` (see :func:`smpl_rotation_to_character`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

# SMPL joint order (indices 0-23 of SMPL pose vectors).
SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hand",
    "right_hand",
)
SMPL_PARENTS: tuple[int, ...] = (
    -1,
    0,
    0,
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    9,
    9,
    12,
    13,
    14,
    16,
    17,
    18,
    19,
    20,
    21,
)
NUM_JOINTS = 24

# Character bodies in MJCF (depth-first) order, and the SMPL joint each one is.
BODY_NAMES: tuple[str, ...] = (
    "Pelvis",
    "L_Hip",
    "L_Knee",
    "L_Ankle",
    "L_Toe",
    "R_Hip",
    "R_Knee",
    "R_Ankle",
    "R_Toe",
    "Torso",
    "Spine",
    "Chest",
    "Neck",
    "Head",
    "L_Thorax",
    "L_Shoulder",
    "L_Elbow",
    "L_Wrist",
    "L_Hand",
    "R_Thorax",
    "R_Shoulder",
    "R_Elbow",
    "R_Wrist",
    "R_Hand",
)
BODY_SMPL_JOINT: tuple[int, ...] = (
    0,
    1,
    4,
    7,
    10,
    2,
    5,
    8,
    11,
    3,
    6,
    9,
    12,
    15,
    13,
    16,
    18,
    20,
    22,
    14,
    17,
    19,
    21,
    23,
)

# Neutral SMPL body, betas = 0: absolute rest joint positions in the SMPL (Y-up) frame,
# metres, in SMPL joint order. Derived from the SMPL neutral model's joint regressor.
NEUTRAL_REST_JOINTS_SMPL = np.array(
    [
        [-0.00179506, -0.22333343, 0.02821913],
        [0.06772467, -0.31473967, 0.02140379],
        [-0.06946554, -0.31385511, 0.02389930],
        [-0.00432793, -0.11437022, 0.00152281],
        [0.10200122, -0.68993831, 0.01690799],
        [-0.10775559, -0.69642413, 0.01504928],
        [0.00115911, 0.02081021, 0.00261528],
        [0.08840552, -1.08789873, -0.02678534],
        [-0.09198183, -1.09483886, -0.02726252],
        [0.00261611, 0.07373245, 0.02803985],
        [0.11476366, -1.14368963, 0.09250306],
        [-0.11735357, -1.14298272, 0.09608543],
        [-0.00016229, 0.28760281, -0.01481718],
        [0.08146084, 0.19548175, -0.00604975],
        [-0.07914308, 0.19256528, -0.01057543],
        [0.00498956, 0.35257241, 0.03653179],
        [0.17243777, 0.22595066, -0.01491791],
        [-0.17515546, 0.22511646, -0.01971850],
        [0.43205002, 0.21317856, -0.04237434],
        [-0.42889744, 0.21178724, -0.04111948],
        [0.68128365, 0.22216462, -0.04354525],
        [-0.68419546, 0.21955952, -0.04667868],
        [0.78376740, 0.21318334, -0.02205384],
        [-0.78349382, 0.21091080, -0.02204354],
    ]
)

# SMPL body frame (x left, y up, z forward) -> character frame (x forward, y left, z up).
SMPL_TO_CHARACTER = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
# A Y-up world (AIST++, CMU) -> the Z-up world: a +90 degree turn about x.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """A 24-joint SMPL skeleton at rest.

    Attributes:
      rest_joints_smpl: (24, 3) absolute rest joint positions in the SMPL Y-up frame, metres.
      name: a label recorded with every reference built on this skeleton.
    """

    rest_joints_smpl: np.ndarray
    name: str = "smpl_neutral"

    def __post_init__(self):
        joints = np.asarray(self.rest_joints_smpl, dtype=np.float64)
        if joints.shape != (NUM_JOINTS, 3) or not np.isfinite(joints).all():
            raise ValueError(
                f"skeleton {self.name!r}: rest_joints_smpl must be finite with shape (24, 3), got {joints.shape}"
            )
        object.__setattr__(self, "rest_joints_smpl", joints)

    @property
    def offsets_smpl(self) -> np.ndarray:
        """(24, 3) each joint's rest offset from its parent (the root's is its position)."""
        offsets = self.rest_joints_smpl.copy()
        for j in range(1, NUM_JOINTS):
            offsets[j] -= self.rest_joints_smpl[SMPL_PARENTS[j]]
        return offsets

    @property
    def offsets_character(self) -> np.ndarray:
        """(24, 3) rest offsets from the parent in the Z-up character frame, SMPL order."""
        return self.offsets_smpl @ SMPL_TO_CHARACTER.T

    @property
    def rest_joints_character(self) -> np.ndarray:
        """(24, 3) rest joint positions in the character frame, relative to the pelvis."""
        return (self.rest_joints_smpl - self.rest_joints_smpl[0]) @ SMPL_TO_CHARACTER.T


def neutral_skeleton() -> Skeleton:
    """The neutral SMPL skeleton (betas = 0)."""
    return Skeleton(NEUTRAL_REST_JOINTS_SMPL, name="smpl_neutral")


def smpl_rotation_to_character(rotations: np.ndarray) -> np.ndarray:
    """Re-expresses SMPL local rotation matrices (..., 3, 3) in the character frame."""
    return SMPL_TO_CHARACTER @ rotations @ SMPL_TO_CHARACTER.T
