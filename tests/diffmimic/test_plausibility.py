"""Physical plausibility measured in every step: torques against limits, feet in and on the floor."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmimic.env import ref_arrays
from diffmimic.metrics import summarize_rollout
from diffmimic.mocap.retarget import load_reference
from diffmimic.mocap.sample import write_sample_dataset
from diffmimic.plausibility import GROUPS
from diffmimic.train import compiled_functions, make_config


@pytest.fixture(scope="module")
def standing(tmp_path_factory):
    clip = next(p for p in write_sample_dataset(tmp_path_factory.mktemp("sample")) if p.name.startswith("idle_sway"))
    reference = load_reference(clip)
    env = compiled_functions(make_config("cpu", num_envs=2, horizon=4, hidden=(32, 32))).env
    ref = ref_arrays(reference)

    @jax.jit
    def run(action_value):
        def control(state, _):
            action = jnp.full(env.action_size, action_value)
            return env.step(state, action, ref, replay=False, measure=True)

        start = env.reset(ref, jax.random.PRNGKey(0), frame=0)
        return jax.lax.scan(control, start, None, length=15)[1]

    return env, run


def test_tracking_the_reference_stays_within_limits_with_feet_on_the_floor(standing):
    env, run = standing
    metrics = jax.device_get(run(0.0))  # residual actions 0: PD targets are the reference's
    summary = summarize_rollout(metrics, np.ones(15, bool)).plausibility
    assert set(summary["torque"]) == set(GROUPS)
    assert all(0.0 <= group["peak_of_limit"] <= 1.0 for group in summary["torque"].values())
    assert summary["torque"]["hips"]["peak_nm"] > 1.0  # the legs hold the body up
    assert summary["foot_contact_share"] > 0.2  # standing: feet on the floor
    assert 0.0 <= summary["foot_penetration_max_m"] < 0.05
    assert summary["foot_skate_m_s"] < 0.5


def test_targets_far_from_the_pose_saturate_every_group(standing):
    env, run = standing
    metrics = jax.device_get(run(6.0))  # +3 rad on every hinge: every actuator asks for its limit
    summary = summarize_rollout(metrics, np.ones(15, bool)).plausibility
    first = np.asarray(metrics.plausibility.group_at_limit)[0]
    assert first.all(), dict(zip(GROUPS, first))
    assert summary["at_limit_share"] > 0.5
    assert all(group["peak_of_limit"] == pytest.approx(1.0) for group in summary["torque"].values())
    assert summary["torque"]["knees"]["peak_nm"] == pytest.approx(env.character.config.torque_limit_nm)


def test_training_steps_leave_plausibility_out_of_the_hot_path(standing):
    env, _ = standing
    ref = ref_arrays(load_reference(next(p for p in write_sample_dataset() if p.name.startswith("squat"))))
    start = env.reset(ref, jax.random.PRNGKey(0), frame=0)
    action = jnp.zeros(env.action_size)
    assert jax.eval_shape(lambda s: env.step(s, action, ref)[1], start).plausibility is None
    measured = jax.eval_shape(lambda s: env.step(s, action, ref, measure=True)[1], start).plausibility
    assert measured.group_torque_nm.shape == (len(GROUPS),)
