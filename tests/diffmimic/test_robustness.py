"""Robust convergence: perturbed starts and pushes really move the simulated state, the check
counts real falls, and a fragile policy is kept and judged as fragile.

The tiny configuration of test_train.py (the persistent compilation cache shares its compiled
functions); the policy is the "still" one (zero actions: the reference's PD targets), which
holds an in-place clip without a fall.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmimic.env import EnvState, ref_arrays
from diffmimic.metrics import EvalMetrics, converged, not_converged_reason, selection_key
from diffmimic.mocap.retarget import load_reference
from diffmimic.mocap.sample import write_sample_dataset
from diffmimic.robustness import Robustness, check_robustness, push_window
from diffmimic.train import compiled_functions, make_config

TINY = dict(num_envs=2, horizon=4, hidden=(32, 32), eval_every=2, iterations=2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    clips = {p.name.removesuffix("_poses.npz"): p for p in write_sample_dataset(tmp_path_factory.mktemp("sample"))}
    reference = load_reference(clips["arm_swings"])
    config = make_config("cpu", **TINY)
    functions = compiled_functions(config)
    state = functions.init(jax.random.PRNGKey(0), config.iterations)
    still = jax.tree.map(jnp.zeros_like, state.params)
    return config, functions, functions.prepared(ref_arrays(reference)), still, state.normaliser


def test_perturb_moves_pose_and_velocity_by_the_configured_size_and_nothing_at_zero(setup):
    config, functions, ref, _, _ = setup
    env = config.env
    start = jax.tree.map(lambda a: a[10], ref.physics)
    key = jax.random.PRNGKey(3)
    same = functions.perturb(start, key, jnp.float32(0.0), jnp.float32(0.0))
    np.testing.assert_allclose(np.asarray(same.q), np.asarray(start.q), atol=1e-5)
    np.testing.assert_allclose(np.asarray(same.x.pos), np.asarray(start.x.pos), atol=1e-5)

    moved = functions.perturb(start, key, jnp.float32(1.0), jnp.float32(0.0))
    hinge_noise = np.asarray(moved.q[7:] - start.q[7:])
    assert 0.5 * env.perturb_joint_rad < hinge_noise.std() < 2 * env.perturb_joint_rad
    lift = float(moved.q[2] - start.q[2])
    assert 0.0 <= lift <= env.perturb_root_m + 1e-6  # raised, never pushed into the floor
    body_shift = np.linalg.norm(np.asarray(moved.x.pos - start.x.pos), axis=-1).mean()
    assert 0.005 < body_shift < 0.2  # centimetres, as a hand-over brings

    pushed = functions.perturb(start, key, jnp.float32(0.0), jnp.float32(1.0))
    kick = np.asarray(pushed.qd[:2] - start.qd[:2])
    assert np.linalg.norm(kick) == pytest.approx(env.push_mps, rel=1e-4)
    np.testing.assert_allclose(np.asarray(pushed.q), np.asarray(start.q), atol=1e-5)


def test_a_hard_push_makes_the_still_policy_fall_where_the_plain_rollout_does_not(setup):
    config, functions, ref, still, normaliser = setup
    first = jax.tree.map(lambda a: a[0], ref.physics)
    steps = int(ref.length) - 1
    start = EnvState(physics=first, t=jnp.int32(0), key=jax.random.PRNGKey(0))
    _, (_, _, _, plain) = functions.rollout(still, normaliser, ref, start, jnp.int32(steps))
    assert not np.asarray(plain.fell)[:steps].any()
    shoved = start.replace(
        physics=functions.perturb(
            first, jax.random.PRNGKey(1), jnp.float32(0.0), jnp.float32(2.0 / config.env.push_mps)
        )
    )  # 2 m/s
    _, (_, _, _, metrics) = functions.rollout(still, normaliser, ref, shoved, jnp.int32(steps))
    assert np.asarray(metrics.fell)[:steps].any()


def test_check_counts_real_rollouts_and_is_repeatable(setup):
    config, functions, ref, still, normaliser = setup
    result = check_robustness(functions, still, normaliser, ref, rollouts=3, min_survival=0.9, seed=0)
    again = check_robustness(functions, still, normaliser, ref, rollouts=3, min_survival=0.9, seed=0)
    assert result == again
    assert result.rollouts == 3 and 0 <= result.survived <= 3
    assert len(result.fell_at_s) == 3 - result.survived and len(result.pose_error_m) == 3
    assert all(0 < t <= (int(ref.length) - 1) / 30.0 for t in result.fell_at_s)
    assert all(0.0 < e < 0.5 for e in result.pose_error_m)  # the rollouts really ran and tracked
    assert Robustness.from_dict(result.to_dict()).to_dict() == result.to_dict()
    low, high = push_window(int(ref.length))
    assert 1 <= low <= high < int(ref.length) - 1


def _metrics(pose_error_m=0.03, fell=False, robustness=None) -> EvalMetrics:
    return EvalMetrics(
        pose_error_m=pose_error_m,
        global_error_m=0.05,
        fell=fell,
        fell_at_s=1.0 if fell else None,
        absurdity={},
        nonfinite_steps=0,
        frames=100,
        robustness=robustness or {},
    )


def test_convergence_needs_robustness_and_says_why_not():
    fragile = Robustness(
        rollouts=10, survived=7, fell_at_s=(2.5, 3.1, 4.0), pose_error_m=(0.03,) * 10, min_survival=0.9
    ).to_dict()
    sturdy = Robustness(
        rollouts=10, survived=9, fell_at_s=(4.0,), pose_error_m=(0.03,) * 10, min_survival=0.9
    ).to_dict()
    assert converged(_metrics(robustness=sturdy), 0.04, 10)
    assert not converged(_metrics(robustness=fragile), 0.04, 10)
    assert not converged(_metrics(), 0.04, 10)  # never checked
    assert converged(_metrics(), 0.04, 0)  # no check required
    assert (
        not_converged_reason(_metrics(robustness=fragile), 0.04, 10)
        == "fragile: 3 of 10 perturbed rollouts fell, first at 2.5 s"
    )
    assert not_converged_reason(_metrics(fell=True), 0.04, 10) == "fell at 1.00 s"
    assert "over the target" in not_converged_reason(_metrics(pose_error_m=0.05), 0.04, 10)
    # The kept policy: robust first, even when a fragile one tracks a little closer.
    candidates = [
        _metrics(0.029, robustness=fragile),
        _metrics(0.033, robustness=sturdy),
        _metrics(0.02, fell=True),
        _metrics(0.05),
    ]
    ordered = sorted(candidates, key=lambda m: selection_key(m, 0.04, 10))
    assert [m.pose_error_m for m in ordered] == [0.033, 0.029, 0.05, 0.02]
    assert sorted(candidates, key=lambda m: selection_key(m, None, 10))[0].pose_error_m == 0.029


@pytest.mark.slow
def test_training_checks_what_meets_the_target_and_keeps_the_checked_policy(setup, tmp_path):
    """A run with a target checks the evaluations that meet it (at most every
    `robust_check_every` iterations) and returns the kept policy with its check."""
    from diffmimic.train import train

    config, functions, ref, still, normaliser = setup
    reference = load_reference(write_sample_dataset(tmp_path)[0].parent / "arm_swings_poses.npz")
    run_config = dataclasses.replace(
        config,
        iterations=4,
        eval_every=1,
        polish_eval_every=1,
        robust_rollouts=2,
        robust_check_every=2,
        polish_pose_error_m=0.0,
    )
    lines = []
    result = train(
        reference, run_config, progress=lines.append, stop_at_pose_error_m=1.0, init_policy=(still, normaliser)
    )
    checks = [line for line in lines if "robustness:" in line]
    assert 1 <= len(checks) <= 2, lines  # due at most every 2 of the 4 evaluations
    assert result.metrics.robustness["rollouts"] == 2
    assert compiled_functions(config).trace_counts["train_step"] <= 1


def test_a_rollout_runs_its_steps_and_holds_the_state_after_them(setup):
    """The step count is data: a short rollout is the start of a long one, and the steps past
    the count are skipped (the state is held, their metrics are zero), so a 1 s window of a long
    clip costs 1 s of simulation, not its whole length bucket."""
    _, functions, ref, still, normaliser = setup
    start = EnvState(physics=jax.tree.map(lambda a: a[0], ref.physics), t=jnp.int32(0), key=jax.random.PRNGKey(0))
    steps = int(ref.length) - 1
    short = 5
    final_long, (q_long, _, _, m_long) = functions.rollout(still, normaliser, ref, start, jnp.int32(steps))
    final, (q, pos, _, metrics) = functions.rollout(still, normaliser, ref, start, jnp.int32(short))
    np.testing.assert_allclose(np.asarray(q[:short]), np.asarray(q_long[:short]), atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(metrics.pose_error_m[:short]), np.asarray(m_long.pose_error_m[:short]), atol=1e-7
    )
    assert int(final.t) == short and int(final_long.t) == steps
    # Past the count: the held state, nothing simulated, nothing measured.
    np.testing.assert_array_equal(np.asarray(q[short:]), np.broadcast_to(np.asarray(final.physics.q), q[short:].shape))
    np.testing.assert_array_equal(np.asarray(pos[-1]), np.asarray(final.physics.x.pos))
    assert not np.asarray(metrics.pose_error_m[short:]).any() and not np.asarray(metrics.fell[short:]).any()
    assert np.asarray(m_long.pose_error_m[:steps]).all()  # the long one measured every step it ran
