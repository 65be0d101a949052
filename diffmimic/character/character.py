"""`Character`: the SMPL humanoid as a Brax system, with its names and indices resolved once."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
from brax import kinematics
from brax.base import System
from brax.io import mjcf as brax_mjcf

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
