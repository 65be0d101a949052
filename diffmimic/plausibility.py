"""Physical plausibility of a simulated step: joint torques against their limits, feet in the
floor and sliding on it.

Measured in every environment step (`MimicEnv.step` puts a `StepPlausibility` in its metrics)
and reduced over an evaluation rollout by `summarize` (`diffmimic.metrics.summarize_rollout`):

- torque per joint group (`anthropometry.JOINT_GROUPS`: hips, knees, ...): the actuators' torque
  at the start of each control step (the PD's first substep, its largest pull toward the new
  target), the group's peak in N m and as a share of its limit, and the share of steps where
  some hinge of the group asked for more than its limit (the actuator clipped it);
- foot penetration: how deep the lowest corner of a foot box is below the floor (m);
- foot skating: the horizontal speed of a foot's lowest corner while it touches the floor (within
  `CONTACT_HEIGHT_M`), in m/s, averaged over the steps and feet in contact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from brax import math as brax_math
from flax import struct

from diffmimic.character import anthropometry
from diffmimic.character.character import Character
from diffmimic.character.skeleton import BODY_NAMES

FOOT_BODIES = ("L_Ankle", "L_Toe", "R_Ankle", "R_Toe")
CONTACT_HEIGHT_M = 0.02  # a foot corner this close to the floor touches it
GROUPS = tuple(anthropometry.JOINT_GROUPS)


@struct.dataclass
class StepPlausibility:
    group_torque_nm: jax.Array  # (G,) largest |torque| of the group's hinges
    group_torque_ratio: jax.Array  # (G,) largest |torque| / limit
    group_at_limit: jax.Array  # (G,) some hinge asked for more than its limit
    foot_depth_m: jax.Array  # (F,) how far the foot's lowest corner is below the floor (>= 0)
    foot_contact: jax.Array  # (F,) the foot touches the floor
    foot_slide_m_s: jax.Array  # (F,) horizontal speed of the lowest corner


class PlausibilityMeter:
    """The character's constants for `measure` (hinge groups, actuator gains, foot corners)."""

    def __init__(self, character: Character):
        sys = character.sys
        actuator = sys.actuator
        self.q_id, self.qd_id = np.asarray(actuator.q_id), np.asarray(actuator.qd_id)
        self.gain, self.gear = np.asarray(actuator.gain), np.asarray(actuator.gear)
        self.bias_q, self.bias_qd = np.asarray(actuator.bias_q), np.asarray(actuator.bias_qd)
        self.ctrl_range, self.force_range = np.asarray(actuator.ctrl_range), np.asarray(actuator.force_range)
        model = sys.mj_model
        actuator_body = [
            model.body(int(model.jnt_bodyid[int(model.actuator_trnid[a, 0])])).name for a in range(model.nu)
        ]
        self.group_mask = np.array(
            [[body in anthropometry.JOINT_GROUPS[g] for body in actuator_body] for g in GROUPS], bool
        )  # (G, A)
        corners = character.foot_sole_points()
        self.foot_index = np.array([BODY_NAMES.index(b) for b in FOOT_BODIES])
        self.foot_corners = np.stack([corners[b] for b in FOOT_BODIES])  # (F, 8, 3) body frame

    def measure(self, physics_before, targets, physics_after) -> StepPlausibility:
        q = physics_before.q[self.q_id]
        qd = physics_before.qd[self.qd_id]
        act = jnp.clip(targets, self.ctrl_range[:, 0], self.ctrl_range[:, 1])
        wanted = self.gain * act + self.gear * (q * self.bias_q + qd * self.bias_qd)
        applied = jnp.clip(wanted, self.force_range[:, 0], self.force_range[:, 1])
        limit = jnp.maximum(jnp.abs(self.force_range).max(axis=1), 1e-9)
        mask = jnp.asarray(self.group_mask)
        torque = jnp.where(mask, jnp.abs(applied)[None], 0.0).max(axis=1)
        ratio = jnp.where(mask, (jnp.abs(applied) / limit)[None], 0.0).max(axis=1)
        at_limit = jnp.any(mask & (jnp.abs(wanted) > limit + 1e-6)[None], axis=1)

        pos = physics_after.x.pos[self.foot_index]  # (F, 3)
        rot = physics_after.x.rot[self.foot_index]
        vel = physics_after.xd.vel[self.foot_index]
        ang = physics_after.xd.ang[self.foot_index]
        offsets = jax.vmap(lambda r, c: jax.vmap(brax_math.rotate, in_axes=(0, None))(c, r))(
            rot, jnp.asarray(self.foot_corners)
        )  # (F, 8, 3) world-frame corner offsets
        world = pos[:, None] + offsets
        lowest = jnp.argmin(world[..., 2], axis=1)
        offset = jnp.take_along_axis(offsets, lowest[:, None, None], axis=1)[:, 0]
        height = jnp.take_along_axis(world[..., 2], lowest[:, None], axis=1)[:, 0]
        corner_vel = vel + jnp.cross(ang, offset)
        return StepPlausibility(
            group_torque_nm=torque,
            group_torque_ratio=ratio,
            group_at_limit=at_limit,
            foot_depth_m=jnp.maximum(-height, 0.0),
            foot_contact=height < CONTACT_HEIGHT_M,
            foot_slide_m_s=jnp.linalg.norm(corner_vel[:, :2], axis=-1),
        )


def summarize(plausibility: StepPlausibility, valid: np.ndarray) -> dict:
    """An evaluation's plausibility from its per-step measurements (arrays (T, ...))."""
    valid = np.asarray(valid, bool)
    if not valid.any():
        return {}
    take = lambda a: np.asarray(a)[valid]
    torque, ratio, at_limit = (
        take(plausibility.group_torque_nm),
        take(plausibility.group_torque_ratio),
        take(plausibility.group_at_limit),
    )
    depth, contact, slide = (
        take(plausibility.foot_depth_m),
        take(plausibility.foot_contact),
        take(plausibility.foot_slide_m_s),
    )
    contacts = int(contact.sum())
    return {
        "torque": {
            group: {
                "peak_nm": round(float(torque[:, g].max()), 2),
                "peak_of_limit": round(float(ratio[:, g].max()), 4),
                "at_limit_share": round(float(at_limit[:, g].mean()), 4),
            }
            for g, group in enumerate(GROUPS)
        },
        "at_limit_share": round(float(at_limit.any(axis=1).mean()), 4),
        "foot_penetration_max_m": round(float(depth.max()), 4),
        "foot_penetration_mean_m": round(float(depth[contact].mean()) if contacts else 0.0, 4),
        "foot_skate_m_s": round(float(slide[contact].mean()) if contacts else 0.0, 4),
        "foot_contact_share": round(float(contact.mean()), 4),
    }
