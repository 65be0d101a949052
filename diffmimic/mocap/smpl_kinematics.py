"""Forward kinematics of the SMPL skeleton in NumPy (the ground truth the character must match)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from diffmimic.character.skeleton import NUM_JOINTS, SMPL_PARENTS, Skeleton


def global_rotations(rotations: np.ndarray) -> np.ndarray:
    """(T, 24, 3) SMPL axis-angle pose -> (T, 24, 3, 3) joint rotations in the world frame.

    Each matrix maps SMPL body-frame vectors (Y-up) of that joint into the Z-up world.
    """
    frames = rotations.shape[0]
    local = Rotation.from_rotvec(rotations.reshape(-1, 3)).as_matrix().reshape(frames, NUM_JOINTS, 3, 3)
    world = np.empty_like(local)
    world[:, 0] = local[:, 0]
    for j in range(1, NUM_JOINTS):
        world[:, j] = world[:, SMPL_PARENTS[j]] @ local[:, j]
    return world


def joint_positions(rotations: np.ndarray, root_position: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """World positions (T, 24, 3) of the SMPL joints, SMPL joint order, metres.

    Args:
      rotations: (T, 24, 3) axis-angle pose (joint 0 global, others local), as in `Motion`.
      root_position: (T, 3) pelvis world position.
      skeleton: the rest skeleton whose offsets are posed.
    """
    world = global_rotations(rotations)
    offsets = skeleton.offsets_smpl
    positions = np.empty(rotations.shape[:2] + (3,))
    positions[:, 0] = root_position
    for j in range(1, NUM_JOINTS):
        parent = SMPL_PARENTS[j]
        positions[:, j] = positions[:, parent] + world[:, parent] @ offsets[j]
    return positions
