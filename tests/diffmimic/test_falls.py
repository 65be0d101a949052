"""Falls are judged against the reference, and the whole body rests on the floor.

A clip that kneels, sits, crawls or lies on the floor keeps its pelvis low on purpose: an
absolute pelvis height cannot tell that from a fall. The body's back, pelvis, head and hands
collide with the floor in the simulation, so such a clip is physically possible to track.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmimic.env import EnvConfig, fell_by_height


def test_a_fall_is_the_pelvis_far_below_its_reference_not_below_a_fixed_height():
    config = EnvConfig()
    drop, fraction, rise = config.fall_pelvis_drop_m, config.fall_pelvis_drop_fraction, config.fall_pelvis_rise_m
    standing, crouched, lying = 0.93, 0.55, 0.12
    cases = [  # (simulated pelvis z, reference pelvis z, fell)
        (0.90, standing, False),
        (0.25, standing, True),  # where the absolute 0.3 m test fell a walker, this does too
        (0.35, standing, False),
        (0.10, lying, False),  # lying as the reference lies: not a fall
        (0.08, crouched, True),  # a crouch collapsed onto the floor
        (0.30, crouched, False),
        (0.03, lying, True),  # through the floor, below its own lying reference
        (0.12, 0.80, True),  # getting up fails: still on the floor while the reference stands
        (standing + rise + 0.1, standing, True),  # thrown up into the air
    ]
    pelvis, reference, expected = (np.array(c) for c in zip(*cases))
    np.testing.assert_array_equal(fell_by_height(pelvis, reference, drop, fraction, rise), expected)
    # The same test in the jitted step (JAX arrays).
    got = jax.jit(lambda p, r: fell_by_height(p, r, drop, fraction, rise))(jnp.asarray(pelvis), jnp.asarray(reference))
    np.testing.assert_array_equal(np.asarray(got), expected)


@pytest.mark.slow
def test_a_body_lying_on_its_back_rests_on_pelvis_back_head_and_hands():
    from brax import math as brax_math

    from diffmimic.physics import backend_character, limp_system, pipeline

    character = backend_character("spring")
    sys, pipe = limp_system(character.sys), pipeline("spring")
    names = list(character.body_names)
    on_back = brax_math.quat_rot_axis(jnp.array([0.0, 1.0, 0.0]), -jnp.pi / 2)  # head along -x, facing up
    q = jnp.asarray(sys.init_q).at[2].set(0.2).at[3:7].set(on_back)
    steps = int(round(1.0 / float(sys.opt.timestep)))

    @jax.jit
    def settle(q):
        state = pipe.init(sys, q, jnp.zeros(sys.qd_size()))
        state, lowest = jax.lax.scan(
            lambda s, _: (pipe.step(sys, s, jnp.zeros(sys.act_size())), s.x.pos[:, 2].min()), state, None, length=steps
        )
        return state.x.pos, lowest

    pos, lowest = (np.asarray(a) for a in settle(q))
    assert np.isfinite(pos).all()
    assert lowest.min() > -0.03, f"a body sank {lowest.min():.3f} m through the floor"
    # Lying: the trunk and head are down near the floor, held up by their own contacts.
    for name in ("Pelvis", "Torso", "Chest", "Head"):
        assert 0.0 < pos[names.index(name), 2] < 0.2, (name, pos[names.index(name), 2])
