"""What is simulated: the character of a physics backend, per body and per hinge, as the engine
steps it.

`describe(character, backend)` reads the compiled MuJoCo model behind the Brax `System` (masses,
principal inertias, hinge ranges, gains, force limits, armature, damping) and applies what the
backend changes when it steps: `spring` and `positional` raise every principal moment of inertia
to the power `1 - spring_inertia_scale` (and masses to `1 - spring_mass_scale`), `generalized`
and `mjx` use the model's. `python -m diffmimic.character describe [--backend B] [--json]` prints
it.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from diffmimic.character.character import Character

# Backends that step scaled masses and inertias (brax spring/positional read
# `spring_mass_scale` / `spring_inertia_scale`); the others step the model's own.
SCALED_INERTIA_BACKENDS = ("spring", "positional")


@dataclasses.dataclass(frozen=True)
class BodyDescription:
    name: str
    mass_kg: float  # as simulated
    inertia_kg_m2: tuple[float, float, float]  # principal moments, as simulated
    model_mass_kg: float  # from the geometry (MuJoCo's compiled model)
    model_inertia_kg_m2: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class HingeDescription:
    name: str
    range_deg: tuple[float, float] | None  # None: unlimited
    kp_nm_per_rad: float
    kd_nm_s_per_rad: float  # the PD's damping, wherever it lives (actuator kv or joint damping)
    torque_limit_nm: float
    armature_kg_m2: float


@dataclasses.dataclass(frozen=True)
class CharacterDescription:
    backend: str
    timestep_s: float
    total_mass_kg: float  # as simulated
    model_total_mass_kg: float
    pd_damping: str
    self_collision: bool
    bodies: tuple[BodyDescription, ...]
    hinges: tuple[HingeDescription, ...]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def table(self) -> str:
        """Plain-text tables (bodies, then hinges)."""
        scaled = any(not np.allclose(b.inertia_kg_m2, b.model_inertia_kg_m2, rtol=1e-4) for b in self.bodies)
        lines = [
            f"backend {self.backend}: timestep {self.timestep_s * 1000:.4g} ms, total mass "
            f"{self.total_mass_kg:.1f} kg as simulated ({self.model_total_mass_kg:.1f} kg from the geometry), "
            f"PD damping in the {self.pd_damping}, self-collision {'on' if self.self_collision else 'off'}"
        ]
        if scaled:
            lines.append("inertias as simulated differ from the geometry's (backend inertia scaling)")
        lines.append(
            f"{'body':<12} {'mass kg':>8} {'inertia kg m^2 (principal, as simulated)':>44} "
            f"{'geometry inertia kg m^2':>36}"
        )
        for b in self.bodies:
            simulated = " ".join(f"{v:10.3g}" for v in b.inertia_kg_m2)
            model = " ".join(f"{v:10.3g}" for v in b.model_inertia_kg_m2)
            lines.append(f"{b.name:<12} {b.mass_kg:8.3f} {simulated:>44} {model:>36}")
        lines.append("")
        lines.append(f"{'hinge':<14} {'range deg':>16} {'kp':>8} {'kd':>7} {'torque limit N m':>17} {'armature':>9}")
        for h in self.hinges:
            span = "unlimited" if h.range_deg is None else f"{h.range_deg[0]:.0f} .. {h.range_deg[1]:.0f}"
            lines.append(
                f"{h.name:<14} {span:>16} {h.kp_nm_per_rad:8.0f} {h.kd_nm_s_per_rad:7.1f} "
                f"{h.torque_limit_nm:17.0f} {h.armature_kg_m2:9.3g}"
            )
        return "\n".join(lines)


def describe(character: Character, backend: str) -> CharacterDescription:
    """The character as `backend` simulates it (see the module docstring)."""
    model = character.sys.mj_model
    sys = character.sys
    mass_power = 1.0 - float(sys.spring_mass_scale) if backend in SCALED_INERTIA_BACKENDS else 1.0
    inertia_power = 1.0 - float(sys.spring_inertia_scale) if backend in SCALED_INERTIA_BACKENDS else 1.0
    bodies = []
    for body_id in range(1, model.nbody):  # 0 is the world
        mass = float(model.body_mass[body_id])
        inertia = tuple(float(v) for v in model.body_inertia[body_id])
        bodies.append(
            BodyDescription(
                name=mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body_id),
                mass_kg=mass**mass_power,
                inertia_kg_m2=tuple(v**inertia_power for v in inertia),
                model_mass_kg=mass,
                model_inertia_kg_m2=inertia,
            )
        )
    actuator_of_joint = {int(model.actuator_trnid[a, 0]): a for a in range(model.nu)}
    hinges = []
    for joint_id in range(model.njnt):
        if model.jnt_type[joint_id] != mujoco.mjtJoint.mjJNT_HINGE:
            continue
        dof = int(model.jnt_dofadr[joint_id])
        actuator = actuator_of_joint.get(joint_id)
        kp = float(model.actuator_gainprm[actuator, 0]) if actuator is not None else 0.0
        kv = float(-model.actuator_biasprm[actuator, 2]) if actuator is not None else 0.0
        limit = (
            float(model.actuator_forcerange[actuator, 1])
            if actuator is not None and model.actuator_forcelimited[actuator]
            else float("inf")
        )
        limited = bool(model.jnt_limited[joint_id])
        hinges.append(
            HingeDescription(
                name=mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint_id),
                range_deg=tuple(float(np.degrees(v)) for v in model.jnt_range[joint_id]) if limited else None,
                kp_nm_per_rad=kp,
                kd_nm_s_per_rad=kv + float(model.dof_damping[dof]),
                torque_limit_nm=limit,
                armature_kg_m2=float(model.dof_armature[dof]),
            )
        )
    return CharacterDescription(
        backend=backend,
        timestep_s=float(model.opt.timestep),
        total_mass_kg=sum(b.mass_kg for b in bodies),
        model_total_mass_kg=sum(b.model_mass_kg for b in bodies),
        pd_damping=character.config.pd_damping,
        self_collision=character.config.self_collision,
        bodies=tuple(bodies),
        hinges=tuple(hinges),
    )
