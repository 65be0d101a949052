"""The character in every Brax pipeline the project offers: it loads, stands and falls safely.

Standing: the PD holds the rest pose for 5 s; the pelvis must neither sink nor blow up.
Limp: every actuator off, dropped from 3 cm up; it must fall, come to rest on the floor and stay
finite for 5 s. (A prototype went NaN on spring ~1 s after falling; positional went NaN at 8
substeps: the per-backend tuning in diffmimic.physics is what these tests hold in place.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmimic.physics import BACKENDS, backend_character, limp_system, pipeline

SECONDS = 5.0
STANDING_PELVIS_M = 0.951  # rest height of the pelvis with the soles on the floor


@functools.lru_cache(maxsize=None)
def _simulator(backend: str):
    """(character, jitted run(sys, start_height) -> per-step pelvis z, lowest body z, max |qd|)."""
    character = backend_character(backend)
    pipe = pipeline(backend)
    steps = int(round(SECONDS / character.sys.opt.timestep))

    @jax.jit
    def run(sys, start_height):
        q = jnp.asarray(sys.init_q).at[2].set(start_height)
        state = pipe.init(sys, q, jnp.zeros(sys.qd_size()))
        hold_rest_pose = jnp.zeros(sys.act_size())

        def step(state, _):
            state = pipe.step(sys, state, hold_rest_pose)
            pelvis_speed = jnp.linalg.norm(state.xd.vel[0])
            return state, (state.x.pos[0, 2], state.x.pos[:, 2].min(), jnp.abs(state.qd).max(), pelvis_speed)

        _, trace = jax.lax.scan(step, state, None, length=steps)
        return trace

    return character, run


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_standing_humanoid_rests_on_the_floor(backend):
    character, run = _simulator(backend)
    assert character.num_actuators == 69 and character.nq == 76
    pelvis, lowest, speed, _ = (np.asarray(a) for a in run(character.sys, STANDING_PELVIS_M + 0.008))
    assert np.isfinite(pelvis).all() and np.isfinite(speed).all()
    # No sinking (spring's joint springs sag the most: 3.4 cm at worst, measured) and no bounce.
    assert pelvis.min() > STANDING_PELVIS_M - 0.045, pelvis.min()
    assert pelvis.max() < STANDING_PELVIS_M + 0.02, pelvis.max()
    assert abs(pelvis[-1] - STANDING_PELVIS_M) < 0.025, pelvis[-1]
    assert lowest.min() > -0.01  # nothing through the floor
    assert speed[-1] < 0.5  # at rest, not vibrating


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_limp_humanoid_falls_and_comes_to_rest(backend):
    character, run = _simulator(backend)
    pelvis, lowest, speed, pelvis_speed = (np.asarray(a) for a in run(limp_system(character.sys), 0.99))
    assert np.isfinite(pelvis).all() and np.isfinite(speed).all(), "went NaN"
    assert pelvis[-1] < 0.3, f"did not fall: pelvis at {pelvis[-1]:.3f} m"
    assert lowest.min() > -0.06, f"sank through the floor: {lowest.min():.3f} m"
    assert pelvis.max() < 1.0, "bounced up"
    # At rest over the last half second: the pelvis still, no joint spinning.
    last = int(0.5 / float(character.sys.opt.timestep))
    assert pelvis_speed[-last:].max() < 0.1, pelvis_speed[-last:].max()
    assert speed[-1] < 1.0, speed[-1]


def test_a_backend_is_refused_a_physics_step_it_cannot_stand_at():
    from diffmimic.env import EnvConfig
    from diffmimic.physics import MAX_TIMESTEP_S, min_substeps

    # mjx differentiates only with one solver iteration, which holds the body at 1920 Hz, not 480.
    assert MAX_TIMESTEP_S["mjx"] == pytest.approx(1 / 1920) and min_substeps("mjx") == 64
    assert min_substeps("spring") == 16
    with pytest.raises(ValueError, match="mjx backend needs a physics step"):
        EnvConfig(backend="mjx")
    assert EnvConfig(backend="mjx", substeps=64).timestep_s == pytest.approx(1 / 1920)


@pytest.mark.slow
def test_the_gradient_passes_through_an_mjx_step():
    """MJX runs more than one constraint-solver iteration in a `while_loop`, which reverse mode
    cannot pass: the mjx tuning's single iteration is what lets DiffMimic train on it."""
    character = backend_character("mjx")
    sys, pipe = character.sys, pipeline("mjx")
    state = pipe.init(sys, jnp.asarray(sys.init_q).at[2].set(0.955), jnp.zeros(sys.qd_size()))

    def after_one_step(targets):  # feet on the floor: contact constraints are in the solve
        moved = pipe.step(sys, state, targets)
        return jnp.sum(moved.x.pos[:, 2]) + jnp.sum(moved.q[7:] ** 2)

    grad = np.asarray(jax.jit(jax.grad(after_one_step))(jnp.full((sys.act_size(),), 0.1)))
    assert np.isfinite(grad).all() and (grad != 0).all()
