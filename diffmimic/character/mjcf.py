"""Builds the SMPL humanoid as MJCF text from a skeleton.

24 bodies, one per SMPL joint, in depth-first order (`BODY_NAMES`). The Pelvis has a free joint;
every other body has a ball joint made of three hinges about its local x, y and z axes (69
actuated DoF), driven by PD position actuators. Every body's rest frame is aligned with the world
(Z-up, X forward); the hinges of a ball turn about its axes in the order `constants.HINGE_ORDER`
gives, so the triple (a, b, c) of order "yxz" is the local rotation Ry(a) Rx(b) Rz(c).
Geoms are sized from bone lengths: capsules for limbs and trunk, boxes for feet, spheres for head
and hands; one density gives the configured total mass.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np

from diffmimic.character import anthropometry, constants
from diffmimic.character.skeleton import (
    BODY_NAMES,
    BODY_SMPL_JOINT,
    NUM_JOINTS,
    SMPL_PARENTS,
    Skeleton,
    neutral_skeleton,
)

# Sole depth below the ankle joint at rest, and the foot box's width/height (metres).
SOLE_BELOW_ANKLE_M = 0.085
FOOT_HALF_WIDTH_M = 0.045

# The Brax-specific contact and joint-constraint parameters, per pipeline family, written as
# MJCF `<custom><numeric>` entries that brax.io.mjcf reads.
DEFAULT_BRAX_CUSTOM: dict[str, float] = {
    "elasticity": 0.0,
    "baumgarte_erp": 0.1,
    "vel_damping": 0.0,
    "ang_damping": 0.0,
    "spring_mass_scale": 0.0,
    "spring_inertia_scale": 0.0,
    "joint_scale_pos": 0.5,
    "joint_scale_ang": 0.2,
    "collide_scale": 1.0,
    "constraint_stiffness": 2000.0,
    "constraint_limit_stiffness": 1000.0,
    "constraint_ang_damping": 0.0,
    "constraint_vel_damping": 0.0,
    "matrix_inv_iterations": 10,
}


@dataclasses.dataclass(frozen=True)
class CharacterConfig:
    """Everything tunable about the simulated body.

    Attributes:
      total_mass_kg: total body mass; a single density is solved for it.
      timestep_s: the physics (sub)step.
      pd_gains: per-body (kp, kd) overrides of `constants.PD_GAINS`.
      torque_limit_nm: actuator force limit.
      armature: rotor inertia added to every hinge (kg m^2); conditions light links.
      joint_damping: passive hinge damping (N m s / rad), added to any PD damping.
      friction: sliding friction coefficient of every contact.
      solref: MuJoCo contact solver reference (time constant, damping ratio).
      brax_custom: overrides of `DEFAULT_BRAX_CUSTOM`.
      self_collision: whether body geoms collide with each other (floor contact always on).
      pd_damping: where the PD's kd term lives: ``actuator`` (kv of the position actuator,
        integrated explicitly: what `spring` and `positional` support) or ``joint`` (passive hinge
        damping, integrated implicitly by `generalized` and `mjx`, stable for light links).
      mass_distribution: ``uniform`` (one density for every geom, giving `total_mass_kg`) or
        ``de_leva``: each segment (thigh, shank, foot, trunk, ...) gets its share of the body
        mass from de Leva (1996) (`anthropometry.DE_LEVA_PERCENT`) through its own density, and
        the total scales with the skeleton's volume (`total_mass_kg` for the neutral skeleton).
      joint_ranges: limit every hinge to its human range (`anthropometry.HINGE_RANGE_DEG`),
        enforced by the simulation; off: every hinge turns freely.
      torque_limits: ``uniform`` (`torque_limit_nm` for every hinge) or ``human``: per joint and
        axis from strength data (`anthropometry.TORQUE_LIMIT_NM`).
      solver_iterations, ls_iterations: MuJoCo's constraint solver iterations and line-search
        iterations per solver iteration (`<option iterations ls_iterations>`; MuJoCo's defaults
        100 and 50). Read by `mjx` only. MJX differentiates in reverse mode only with one solver
        iteration: more run in a `while_loop`.
    """

    total_mass_kg: float = 70.0
    timestep_s: float = 1.0 / 480.0
    pd_gains: Mapping[str, tuple[float, float]] = ()
    torque_limit_nm: float = constants.TORQUE_LIMIT_NM
    armature: float = 0.01
    joint_damping: float = 0.0
    friction: float = 1.0
    solref: tuple[float, float] = (0.02, 1.0)
    brax_custom: Mapping[str, float] = ()
    self_collision: bool = False
    pd_damping: str = "actuator"
    mass_distribution: str = "uniform"
    joint_ranges: bool = False
    torque_limits: str = "uniform"
    solver_iterations: int = 100
    ls_iterations: int = 50

    def __post_init__(self):
        # Mappings are stored as sorted item tuples so configs hash (they key compile caches).
        for name in ("pd_gains", "brax_custom"):
            value = getattr(self, name)
            items = value.items() if isinstance(value, Mapping) else value
            object.__setattr__(
                self, name, tuple(sorted((str(k), v if isinstance(v, (int, float)) else tuple(v)) for k, v in items))
            )

    def gains(self) -> dict[str, tuple[float, float]]:
        overrides = dict(self.pd_gains)
        unknown = set(overrides) - set(constants.PD_GAINS)
        if unknown:
            raise ValueError(f"pd_gains: unknown bodies {sorted(unknown)}; known: {sorted(constants.PD_GAINS)}")
        return {**constants.PD_GAINS, **overrides}


@dataclasses.dataclass(frozen=True)
class _Geom:
    kind: str  # capsule | sphere | box
    size: tuple[float, ...]
    fromto: tuple[float, ...] | None = None
    pos: tuple[float, ...] | None = None

    def volume(self) -> float:
        if self.kind == "sphere":
            return 4.0 / 3.0 * math.pi * self.size[0] ** 3
        if self.kind == "box":
            return 8.0 * self.size[0] * self.size[1] * self.size[2]
        radius = self.size[0]
        length = float(np.linalg.norm(np.subtract(self.fromto[3:], self.fromto[:3])))
        return math.pi * radius**2 * length + 4.0 / 3.0 * math.pi * radius**3


def _capsule(start, end, radius: float, trim: float = 0.0) -> _Geom:
    """A capsule along start->end, each end pulled in by `trim` * radius."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    direction = end - start
    length = float(np.linalg.norm(direction))
    pull = min(trim * radius, 0.45 * length) / max(length, 1e-9)
    a, b = start + pull * direction, end - pull * direction
    return _Geom("capsule", (radius,), fromto=tuple(np.round(np.concatenate([a, b]), 5)))


def _geoms(skeleton: Skeleton) -> dict[str, list[_Geom]]:
    """Collision/mass geoms of each body in its own frame (character axes)."""
    off = skeleton.offsets_character  # SMPL order, offset of each joint from its parent
    o = {name: off[j] for name, j in zip(BODY_NAMES, BODY_SMPL_JOINT)}
    zero = np.zeros(3)
    geoms: dict[str, list[_Geom]] = {}
    hip_l, hip_r = o["L_Hip"], o["R_Hip"]
    geoms["Pelvis"] = [_capsule(0.75 * hip_l + [0, 0, 0.02], 0.75 * hip_r + [0, 0, 0.02], 0.09)]
    for side in "LR":
        geoms[f"{side}_Hip"] = [_capsule(zero, o[f"{side}_Knee"], 0.06, trim=1.0)]
        geoms[f"{side}_Knee"] = [_capsule(zero, o[f"{side}_Ankle"], 0.05, trim=1.0)]
        # Foot: a box from the heel to the toe joint, its sole SOLE_BELOW_ANKLE_M below the ankle.
        toe = o[f"{side}_Toe"]
        heel_x, front_x = -0.06, toe[0]
        top_z, bottom_z = -0.02, -SOLE_BELOW_ANKLE_M
        geoms[f"{side}_Ankle"] = [
            _Geom(
                "box",
                (0.5 * (front_x - heel_x), FOOT_HALF_WIDTH_M, 0.5 * (top_z - bottom_z)),
                pos=(0.5 * (front_x + heel_x), toe[1] * 0.5, 0.5 * (top_z + bottom_z)),
            )
        ]
        toe_bottom = -SOLE_BELOW_ANKLE_M - toe[2]  # sole level in the toe frame
        geoms[f"{side}_Toe"] = [
            _Geom(
                "box", (0.03, FOOT_HALF_WIDTH_M, 0.5 * (0.02 - toe_bottom)), pos=(0.03, 0.0, 0.5 * (0.02 + toe_bottom))
            )
        ]
        geoms[f"{side}_Thorax"] = [_capsule(zero, o[f"{side}_Shoulder"], 0.045, trim=1.0)]
        geoms[f"{side}_Shoulder"] = [_capsule(zero, o[f"{side}_Elbow"], 0.045, trim=1.0)]
        geoms[f"{side}_Elbow"] = [_capsule(zero, o[f"{side}_Wrist"], 0.04, trim=1.0)]
        geoms[f"{side}_Wrist"] = [_Geom("sphere", (0.035,), pos=tuple(np.round(0.5 * o[f"{side}_Hand"], 5)))]
        geoms[f"{side}_Hand"] = [_Geom("sphere", (0.035,), pos=tuple(np.round(0.6 * o[f"{side}_Hand"], 5)))]
    geoms["Torso"] = [_capsule(zero, o["Spine"], 0.08)]
    geoms["Spine"] = [_capsule(zero, o["Chest"], 0.085)]
    chest_l, chest_r = o["L_Thorax"], o["R_Thorax"]
    geoms["Chest"] = [_capsule(chest_l + [-0.02, 0.0, -0.03], chest_r + [-0.02, 0.0, -0.03], 0.09)]
    geoms["Neck"] = [_capsule(zero, o["Head"], 0.045, trim=0.5)]
    geoms["Head"] = [_Geom("sphere", (0.095,), pos=(0.02, 0.0, 0.09))]
    return geoms


def _fmt(values) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def body_children(body_index: int) -> list[int]:
    """Indices (in BODY_NAMES order) of the bodies whose SMPL parent is this body's joint."""
    joint = BODY_SMPL_JOINT[body_index]
    return [i for i, j in enumerate(BODY_SMPL_JOINT) if SMPL_PARENTS[j] == joint]


MASS_DISTRIBUTIONS = ("uniform", "de_leva")
TORQUE_LIMIT_MODELS = ("uniform", "human")


def _volume(geoms: list[_Geom]) -> float:
    return sum(g.volume() for g in geoms)


def body_densities(
    skeleton: Skeleton, config: CharacterConfig, geoms: dict[str, list[_Geom]] | None = None
) -> dict[str, float]:
    """The density (kg/m^3) of each body's geoms under `config.mass_distribution`."""
    geoms = geoms or _geoms(skeleton)
    if config.mass_distribution == "uniform":
        density = config.total_mass_kg / sum(_volume(g) for g in geoms.values())
        return {name: density for name in geoms}
    if config.mass_distribution != "de_leva":
        raise ValueError(f"mass_distribution must be one of {MASS_DISTRIBUTIONS}, got {config.mass_distribution!r}")
    neutral_volume = sum(_volume(g) for g in _geoms(neutral_skeleton()).values())
    total_mass = config.total_mass_kg * sum(_volume(g) for g in geoms.values()) / neutral_volume
    segment_volume: dict[str, float] = {}
    for name, body_geoms in geoms.items():
        key = anthropometry.segment_key(name)
        segment_volume[key] = segment_volume.get(key, 0.0) + _volume(body_geoms)
    return {
        name: total_mass
        * anthropometry.segment_percent(anthropometry.segment_key(name))
        / 100.0
        / segment_volume[anthropometry.segment_key(name)]
        for name in geoms
    }


def build_mjcf(skeleton: Skeleton, config: CharacterConfig = CharacterConfig()) -> str:
    """MJCF text of the humanoid on `skeleton` with a floor, ready for brax.io.mjcf.loads."""
    geoms = _geoms(skeleton)
    density = body_densities(skeleton, config, geoms)
    gains = config.gains()
    if config.pd_damping not in ("actuator", "joint"):
        raise ValueError(f"pd_damping must be 'actuator' or 'joint', got {config.pd_damping!r}")
    if config.torque_limits not in TORQUE_LIMIT_MODELS:
        raise ValueError(f"torque_limits must be one of {TORQUE_LIMIT_MODELS}, got {config.torque_limits!r}")
    offsets = skeleton.offsets_character
    contype, conaffinity = (1, 1) if config.self_collision else (1, 0)

    def body_xml(index: int, depth: int) -> str:
        name = BODY_NAMES[index]
        pad = "  " * depth
        pos = np.zeros(3) if index == 0 else offsets[BODY_SMPL_JOINT[index]]
        if index == 0:
            pos = np.array([0.0, 0.0, 1.0])
        lines = [f'{pad}<body name="{name}" pos="{_fmt(pos)}">']
        if index == 0:
            lines.append(f'{pad}  <freejoint name="root"/>')
        else:
            damping = config.joint_damping + (gains[name][1] if config.pd_damping == "joint" else 0.0)
            for axis in constants.HINGE_ORDER[name]:
                vec = np.eye(3)["xyz".index(axis)]
                limits = ""
                if config.joint_ranges:
                    low, high = np.radians(anthropometry.hinge_range_deg(name, axis))
                    limits = f' limited="true" range="{low:.6g} {high:.6g}"'
                lines.append(
                    f'{pad}  <joint name="{name}_{axis}" type="hinge" axis="{_fmt(vec)}" '
                    f'damping="{damping:g}"{limits}/>'
                )
        for k, g in enumerate(geoms[name]):
            placement = f'fromto="{_fmt(g.fromto)}"' if g.fromto is not None else f'pos="{_fmt(g.pos)}"'
            lines.append(
                f'{pad}  <geom name="{name}_geom{k}" type="{g.kind}" size="{_fmt(g.size)}" {placement} '
                f'density="{density[name]:.6g}" contype="{contype}" conaffinity="{conaffinity}"/>'
            )
        for child in body_children(index):
            lines.append(body_xml(child, depth + 1))
        lines.append(f"{pad}</body>")
        return "\n".join(lines)

    actuators = []
    for name in BODY_NAMES[1:]:
        kp, kd = gains[name]
        kd = kd if config.pd_damping == "actuator" else 0.0
        for axis in constants.HINGE_ORDER[name]:
            limit = (
                anthropometry.torque_limit_nm(name, axis) if config.torque_limits == "human" else config.torque_limit_nm
            )
            actuators.append(
                f'    <position name="{name}_{axis}" joint="{name}_{axis}" kp="{kp:g}" kv="{kd:g}" '
                f'ctrlrange="-6.2832 6.2832" forcerange="{-limit:g} {limit:g}"/>'
            )
    custom = {**DEFAULT_BRAX_CUSTOM, **dict(config.brax_custom)}
    unknown = set(dict(config.brax_custom)) - set(DEFAULT_BRAX_CUSTOM)
    if unknown:
        raise ValueError(f"brax_custom: unknown keys {sorted(unknown)}; known: {sorted(DEFAULT_BRAX_CUSTOM)}")
    numerics = "\n".join(f'    <numeric name="{k}" data="{v:g}"/>' for k, v in custom.items())
    assert len(BODY_NAMES) == NUM_JOINTS
    return f"""<mujoco model="smpl_humanoid">
  <compiler angle="radian"/>
  <option timestep="{config.timestep_s:.8g}" integrator="Euler" cone="pyramidal"
          iterations="{config.solver_iterations:d}" ls_iterations="{config.ls_iterations:d}"/>
  <custom>
{numerics}
  </custom>
  <default>
    <joint armature="{config.armature:g}" damping="{config.joint_damping:g}" limited="false"/>
    <geom friction="{config.friction:g} 0.005 0.0001" solref="{_fmt(config.solref)}" condim="3"/>
  </default>
  <worldbody>
    <geom name="floor" type="plane" size="0 0 1" contype="1" conaffinity="1"/>
{body_xml(0, 2)}
  </worldbody>
  <actuator>
{chr(10).join(actuators)}
  </actuator>
</mujoco>
"""
