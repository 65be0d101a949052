"""`Character`: the SMPL humanoid as a Brax system, with its names and indices resolved once."""

from __future__ import annotations

import dataclasses
import functools

import jax
import mujoco
import numpy as np
from brax import kinematics
from brax.base import System
from brax.io import mjcf as brax_mjcf
from scipy.spatial.transform import Rotation

from diffmimic.character.mjcf import SOLE_BELOW_ANKLE_M, CharacterConfig, build_mjcf
from diffmimic.character.skeleton import BODY_NAMES, BODY_SMPL_JOINT, Skeleton, neutral_skeleton


@dataclasses.dataclass(frozen=True)
class Character:
    """The humanoid: its skeleton, config, MJCF text and the Brax `System` loaded from it."""

    skeleton: Skeleton
    config: CharacterConfig
    mjcf: str
    sys: System

    @property
    def body_names(self) -> tuple[str, ...]:
        return BODY_NAMES

    @property
    def smpl_joint(self) -> np.ndarray:
        """(24,) each body's SMPL joint index."""
        return np.asarray(BODY_SMPL_JOINT)

    @property
    def nq(self) -> int:
        return int(self.sys.q_size())

    @property
    def nv(self) -> int:
        return int(self.sys.qd_size())

    @property
    def num_actuators(self) -> int:
        return int(self.sys.act_size())

    def foot_sole_points(self) -> dict[str, np.ndarray]:
        """Corner points of each foot box in its body frame: {body: (8, 3)}."""
        mj = self.sys.mj_model
        corners = {}
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
        for name in ("L_Ankle", "R_Ankle", "L_Toe", "R_Toe"):
            geom = mj.geom(f"{name}_geom0")
            corners[name] = np.asarray(mj.geom_pos[geom.id]) + signs * np.asarray(mj.geom_size[geom.id])
        return corners

    def lowest_points(self, body_pos: np.ndarray, body_rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The lowest point of the whole body on each frame, over every collision geom (feet,
        hands, knees, back, head: every geom touches the floor, `build_mjcf`).

        Args:
          body_pos: (T, 24, 3) body positions, body_rot: (T, 24, 4) wxyz, world frame.
        Returns:
          (points (T, 3), body (T,) index of the body that owns it).
        """
        mj = self.sys.mj_model
        frames = body_pos.shape[0]
        best = np.full((frames, 3), np.inf)
        owner = np.zeros(frames, int)
        body_mats = _matrices(body_rot)  # (T, 24, 3, 3)
        for geom in range(mj.ngeom):
            index = int(mj.geom_bodyid[geom]) - 1  # MuJoCo body 0 is the world (the floor)
            if index < 0:
                continue
            rotation = body_mats[:, index]
            center = body_pos[:, index] + rotation @ mj.geom_pos[geom]
            axes = rotation @ _matrices(mj.geom_quat[geom][None])[0]  # (T, 3, 3) geom axes in world
            size, kind = mj.geom_size[geom], int(mj.geom_type[geom])
            if kind == _SPHERE:
                point = center - [0.0, 0.0, size[0]]
            elif kind == _CAPSULE:  # the end whose cap is lower, then down by the radius
                along = axes[:, :, 2] * size[1]
                point = center - np.sign(along[:, 2:3] + 1e-12) * along - [0.0, 0.0, size[0]]
            elif kind == _BOX:  # the corner whose every axis points down
                point = center - np.einsum("tij,tj->ti", axes, np.sign(axes[:, 2, :] + 1e-12) * size[:3])
            else:
                raise ValueError(f"geom {geom} of body {BODY_NAMES[index]}: unsupported type {kind}")
            lower = point[:, 2] < best[:, 2]
            best = np.where(lower[:, None], point, best)
            owner = np.where(lower, index, owner)
        return best, owner

    def center_of_mass(self, body_pos: np.ndarray, body_rot: np.ndarray) -> np.ndarray:
        """(T, 3) the whole body's centre of mass from body positions (T, 24, 3) and rotations wxyz."""
        mj = self.sys.mj_model
        mass = np.asarray(mj.body_mass[1:], float)
        local = np.asarray(mj.body_ipos[1:], float)  # each body's centre of mass in its frame
        centers = body_pos + np.einsum("tbij,bj->tbi", _matrices(body_rot), local)
        return np.einsum("tbi,b->ti", centers, mass) / mass.sum()

    def forward_kinematics(self, qpos: np.ndarray, qvel: np.ndarray):
        """Body states for a batch of generalized coordinates.

        Args:
          qpos: (T, nq) positions, qvel: (T, nv) velocities (Brax/MuJoCo conventions).
        Returns:
          (pos (T, 24, 3), rot (T, 24, 4) wxyz, vel (T, 24, 3), ang (T, 24, 3)), world frame.
        """
        frames = qpos.shape[0]
        padded = max(64, 1 << (frames - 1).bit_length())  # few shapes -> few compiles
        pad = ((0, padded - frames), (0, 0))
        x, xd = _batched_forward(
            self.sys,
            jax.numpy.asarray(np.pad(qpos, pad, mode="edge")),
            jax.numpy.asarray(np.pad(qvel, pad, mode="edge")),
        )
        return tuple(np.asarray(a[:frames], dtype=np.float64) for a in (x.pos, x.rot, xd.vel, xd.ang))


_SPHERE = int(mujoco.mjtGeom.mjGEOM_SPHERE)
_CAPSULE = int(mujoco.mjtGeom.mjGEOM_CAPSULE)
_BOX = int(mujoco.mjtGeom.mjGEOM_BOX)


def _matrices(wxyz: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of quaternions (..., 4) wxyz."""
    wxyz = np.asarray(wxyz, float)
    xyzw = np.concatenate([wxyz[..., 1:], wxyz[..., :1]], axis=-1).reshape(-1, 4)
    return Rotation.from_quat(xyzw).as_matrix().reshape(*wxyz.shape[:-1], 3, 3)


@jax.jit
def _batched_forward(sys: System, qpos: jax.Array, qvel: jax.Array):
    return jax.vmap(kinematics.forward, in_axes=(None, 0, 0))(sys, qpos, qvel)


@functools.lru_cache(maxsize=16)
def _load_system(mjcf_text: str) -> System:
    return brax_mjcf.loads(mjcf_text)


def make_character(skeleton: Skeleton | None = None, config: CharacterConfig | None = None) -> Character:
    """Builds the character for a skeleton and config (Brax systems are cached per MJCF text)."""
    skeleton = skeleton or neutral_skeleton()
    config = config or CharacterConfig()
    text = build_mjcf(skeleton, config)
    return Character(skeleton=skeleton, config=config, mjcf=text, sys=_load_system(text))


__all__ = ["Character", "make_character", "SOLE_BELOW_ANKLE_M"]
