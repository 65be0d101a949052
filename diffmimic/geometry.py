"""Heading (yaw) helpers shared by the environment, warm starts, composition and rendering.

The heading of a body is the yaw of its forward (x) axis projected on the ground; "the heading
frame" is the world frame turned by minus that yaw about +z. NumPy versions for analysis code,
a JAX one (`heading_inverse`) for the jitted environment.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from brax import math as brax_math


def heading_yaw(rot_wxyz: np.ndarray) -> np.ndarray:
    """Yaw (rad) of the forward (x) axis projected on the ground, for (..., 4) wxyz quaternions."""
    q = np.asarray(rot_wxyz, np.float64)
    w, x, y, z = (q[..., i] for i in range(4))
    return np.arctan2(2 * (x * y + w * z), 1 - 2 * (y * y + z * z))


def rotate_z(vectors: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(..., 3) vectors turned about +z by `yaw` (broadcast against the vectors' leading axes)."""
    vectors = np.asarray(vectors, np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    x, y = vectors[..., 0], vectors[..., 1]
    return np.stack([c * x - s * y, s * x + c * y, vectors[..., 2]], -1)


def heading_frame_pose(body_pos: np.ndarray, body_rot: np.ndarray) -> np.ndarray:
    """Body positions (..., B, 3) relative to the root (body 0), in the root's heading frame."""
    body_pos = np.asarray(body_pos, np.float64)
    yaw = heading_yaw(np.asarray(body_rot)[..., 0, :])
    return rotate_z(body_pos - body_pos[..., :1, :], -yaw[..., None])


def heading_inverse(root_rot: jnp.ndarray) -> jnp.ndarray:
    """The quaternion (wxyz) undoing the root's yaw (JAX, jittable)."""
    forward = brax_math.rotate(jnp.array([1.0, 0.0, 0.0]), root_rot)
    yaw = jnp.arctan2(forward[1], forward[0])
    return brax_math.quat_rot_axis(jnp.array([0.0, 0.0, 1.0]), -yaw)
