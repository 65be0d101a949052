"""Physics backends: which Brax pipeline steps the character, and how each is tuned.

Every Brax pipeline needs its own contact/joint parameters for this humanoid to stand, fall and
settle without exploding; `BACKEND_CHARACTER` records the tuning (measured, see the README's
physics section) as overrides of `CharacterConfig`.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from types import ModuleType

import jax.numpy as jnp
import numpy as np

from diffmimic.character.character import Character, make_character
from diffmimic.character.mjcf import CharacterConfig
from diffmimic.character.skeleton import Skeleton

BACKENDS = ("spring", "positional", "generalized", "mjx")

# Named bodies (`EnvConfig.body`): ``uniform`` is the CharacterConfig as given (by default one
# density for every geom, unlimited hinges, one torque limit); ``human`` sets de Leva's segment
# masses, human joint ranges and human torque limits (`diffmimic.character.anthropometry`).
BODIES = ("uniform", "human")
HUMAN_BODY: dict = {"mass_distribution": "de_leva", "joint_ranges": True, "torque_limits": "human"}

# Per-backend overrides of CharacterConfig, measured with the standing and limp-fall tests
# (tests/diffmimic/test_physics.py; figures in the README's physics section):
# - spring and positional integrate the PD damping explicitly (actuator kv) and ignore joint
#   damping; `spring_inertia_scale` 0.8 (inertia I -> I^0.2) conditions the light links (a hand
#   weighs 0.26 kg) enough for kd*dt/I < 2 at 480 Hz; `constraint_ang_damping` lets a limp body
#   come to rest. spring holds its joints with springs: stiffness 50,000 keeps the sag under 2 cm
#   (60,000 goes NaN). positional needs `collide_scale` 0.3 or the feet creep until it falls.
# - generalized and mjx integrate joint damping implicitly, so the PD's kd goes there;
#   generalized only does so with the exact mass-matrix inverse (`matrix_inv_iterations` 0).
# - mjx: one Newton iteration of MuJoCo's constraint solver (4 line-search steps): MJX runs more
#   in a `while_loop`, which reverse-mode differentiation (the training gradient) cannot pass.
#   With one iteration the physics step must be small (`MAX_TIMESTEP_S`).
BACKEND_CHARACTER: dict[str, dict] = {
    "spring": {
        "pd_damping": "actuator",
        "brax_custom": {
            "spring_inertia_scale": 0.8,
            "constraint_stiffness": 50000.0,
            "constraint_vel_damping": 40.0,
            "constraint_ang_damping": 5.0,
        },
    },
    "positional": {
        "pd_damping": "actuator",
        "brax_custom": {"spring_inertia_scale": 0.8, "collide_scale": 0.3, "constraint_ang_damping": 5.0},
    },
    "generalized": {"pd_damping": "joint", "joint_damping": 2.0, "brax_custom": {"matrix_inv_iterations": 0}},
    "mjx": {"pd_damping": "joint", "joint_damping": 2.0, "solver_iterations": 1, "ls_iterations": 4},
}


# The largest physics step each backend passes the standing and limp tests at with this humanoid:
# MJX with one solver iteration lets the body sink to the floor at 480 Hz (two iterations hold it,
# but cannot be differentiated); at 960 Hz the uniform body sinks 0.64 s in (the human one
# stands) and a limp body keeps jittering on the floor at ~0.05 m/s; at 1920 Hz both stand, and
# a limp body comes to rest (0.005 m/s).
MAX_TIMESTEP_S: dict[str, float] = {"spring": 1 / 480, "positional": 1 / 480, "generalized": 1 / 480, "mjx": 1 / 1920}


# Backends whose steps may run on several JAX CPU devices at once (`diffmimic.train.env_split`).
# `generalized` and `mjx` factor mass matrices with LAPACK kernels, and a program calling them
# replicated on two CPU devices (jaxlib 0.10) never returned: preparing a reference on either hung
# with all threads waiting, where one device prepares it in 8.5 s (`generalized`). They keep one
# device; `spring` and `positional` do no LAPACK calls.
CPU_SPLIT_BACKENDS = ("spring", "positional")


def check_timestep(backend: str, timestep_s: float) -> float:
    """`timestep_s`, or a ValueError when it is over `MAX_TIMESTEP_S` for `backend`."""
    limit = MAX_TIMESTEP_S[check_backend(backend)]
    if timestep_s > limit * (1 + 1e-6):
        raise ValueError(
            f"the {backend} backend needs a physics step of at most {limit:.6g} s "
            f"({1 / limit:.0f} Hz), got {timestep_s:.6g} s: raise the substeps"
        )
    return timestep_s


def min_substeps(backend: str, control_hz: float = 30.0) -> int:
    """The fewest physics steps per control step at which `backend` is stable."""
    return int(math.ceil(1.0 / (control_hz * MAX_TIMESTEP_S[check_backend(backend)]) - 1e-6))


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown physics backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def pipeline(backend: str) -> ModuleType:
    """The Brax pipeline module (`init(sys, q, qd)`, `step(sys, state, act)`) of a backend."""
    return importlib.import_module(f"brax.{check_backend(backend)}.pipeline")


def body_config(body: str, base: CharacterConfig | None = None) -> CharacterConfig:
    """`base` (default CharacterConfig()) as the named body (`BODIES`)."""
    if body not in BODIES:
        raise ValueError(f"unknown body {body!r}; choose one of {', '.join(BODIES)}")
    base = base or CharacterConfig()
    return dataclasses.replace(base, **HUMAN_BODY) if body == "human" else base


def backend_config(backend: str, base: CharacterConfig | None = None) -> CharacterConfig:
    """`base` (default CharacterConfig()) with the backend's tuning applied.

    Explicit `brax_custom` entries in `base` win over the backend's.
    """
    base = base or CharacterConfig()
    tuning = dict(BACKEND_CHARACTER[check_backend(backend)])
    custom = {**tuning.pop("brax_custom", {}), **dict(base.brax_custom)}
    return dataclasses.replace(base, brax_custom=custom, **tuning)


def backend_character(backend: str, skeleton: Skeleton | None = None, base: CharacterConfig | None = None) -> Character:
    """The character tuned for `backend` (with no `base`: at the backend's largest stable step)."""
    return make_character(skeleton, backend_config(backend, base or default_body(backend)))


def default_body(backend: str) -> CharacterConfig:
    """CharacterConfig() at `backend`'s largest stable physics step (480 Hz; mjx 1920 Hz)."""
    return CharacterConfig(timestep_s=min(CharacterConfig.timestep_s, MAX_TIMESTEP_S[check_backend(backend)]))


def limp_system(sys, joint_damping: float = 2.0):
    """`sys` with every actuator switched off (no PD force) and only passive hinge damping.

    Sets both Brax's actuator fields (spring, positional, generalized) and the MuJoCo model
    fields that `mjx` reads, so one compiled function can step the powered and the limp body.
    """
    actuator = sys.actuator.replace(
        gain=sys.actuator.gain * 0, bias_q=sys.actuator.bias_q * 0, bias_qd=sys.actuator.bias_qd * 0
    )
    hinge = np.arange(sys.qd_size()) >= 6
    damping = np.where(hinge, joint_damping, np.asarray(sys.dof_damping))
    return sys.replace(
        actuator=actuator,
        dof=sys.dof.replace(damping=jnp.asarray(damping, jnp.float32)),
        dof_damping=jnp.asarray(damping, sys.dof_damping.dtype),
        actuator_gainprm=sys.actuator_gainprm * 0,
        actuator_biasprm=sys.actuator_biasprm * 0,
    )
