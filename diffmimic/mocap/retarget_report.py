"""What retargeting made of a clip: the reader's decisions (for BVH: rig, joint map, units, up
axis, scale), how far contact-aware retargeting moved it to put the body on the floor, and the
foot skating and floor penetration of the retargeted reference.

The foot measures are the simulator's own (`diffmimic.plausibility.PlausibilityMeter` and
`summarize`: the lowest corner of each foot box, in contact within `CONTACT_HEIGHT_M` of the floor),
applied to the reference's body states instead of a simulated step's, so a reference and a
policy's rollout are measured alike.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from diffmimic.character.character import Character, make_character
from diffmimic.mocap.bvh import load_bvh_with_report
from diffmimic.mocap.readers import detect_format, load_motion
from diffmimic.mocap.retarget import Reference, retarget
from diffmimic.plausibility import PlausibilityMeter, summarize

PAD_FRAMES = 512
FOOT_KEYS = ("foot_skate_m_s", "foot_penetration_max_m", "foot_penetration_mean_m", "foot_contact_share")


_MEASURES: dict = {}  # character MJCF text -> jitted measure


def _measure(character: Character):
    """The plausibility meter's `measure` over a clip's frames, jitted once per character
    (the torques of a zero action it also computes are not used)."""
    if character.mjcf in _MEASURES:
        return _MEASURES[character.mjcf]
    meter, nq, nv, nu = PlausibilityMeter(character), character.nq, character.nv, character.num_actuators

    def one(pos, rot, vel, ang):
        state = SimpleNamespace(
            x=SimpleNamespace(pos=pos, rot=rot), xd=SimpleNamespace(vel=vel, ang=ang), q=jnp.zeros(nq), qd=jnp.zeros(nv)
        )
        return meter.measure(state, jnp.zeros(nu), state)

    _MEASURES[character.mjcf] = jax.jit(jax.vmap(one))
    return _MEASURES[character.mjcf]


def reference_feet(reference: Reference, character: Character | None = None) -> dict:
    """Foot skating (m/s, mean horizontal speed of the feet touching the floor), penetration
    (deepest and mean depth of a foot below the floor, m) and the share of foot-frames in contact
    of a reference, by the same definitions as a simulated rollout's (`plausibility.summarize`)."""
    character = character or make_character()
    frames = reference.num_frames
    padded = -(-frames // PAD_FRAMES) * PAD_FRAMES  # one compile per length bucket, not per clip

    def pad(array):
        array = np.asarray(array, np.float32)
        return jnp.asarray(np.concatenate([array, np.repeat(array[-1:], padded - frames, axis=0)]))

    steps = _measure(character)(
        pad(reference.body_pos), pad(reference.body_rot), pad(reference.body_vel), pad(reference.body_ang)
    )
    steps = jax.tree_util.tree_map(lambda a: np.asarray(a)[:frames], steps)
    summary = summarize(steps, np.ones(frames, bool))
    return {key: summary[key] for key in FOOT_KEYS}


def retarget_report(
    path: str | os.PathLike, fps: float = 30.0, reader_options: dict | None = None, character: Character | None = None
) -> dict:
    """Reads and retargets the clip at `path` and reports what was done.

    Returns a dict: ``source``, ``format``, ``frames``, ``duration_s``, the reader's report for
    BVH (``rig``, ``mapped``, ``ignored``, ``units``, ``up_axis``, ``leg_length_m``,
    ``height_m``, ``scale``, ...), ``clamped_values``, `support_figures` and the reference's
    `reference_feet`.
    """
    character = character or make_character()
    info: dict = {}
    if detect_format(path) == "bvh":
        motion, bvh = load_bvh_with_report(path, reader_options)
        info.update(bvh.to_dict())
    else:
        motion = load_motion(path, reader_options=reader_options)
    reference = retarget(motion, character, fps=fps)
    return {
        "source": str(path),
        "format": motion.format,
        "frames": reference.num_frames,
        "duration_s": round(reference.duration_s, 3),
        **info,
        "clamped_values": reference.clamped_values,
        **support_figures(reference),
        **reference_feet(reference, character),
    }


def support_figures(reference: Reference) -> dict:
    """How far contact-aware retargeting moved the clip (`retarget.support_shift`): the largest
    shift (m, either way) and the share of frames moved by more than a millimetre."""
    shift = np.zeros(reference.num_frames) if reference.support_shift is None else np.abs(reference.support_shift)
    return {
        "support_shift_max_m": round(float(shift.max()), 4),
        "support_shifted_share": round(float(np.mean(shift > 1e-3)), 3),
    }
