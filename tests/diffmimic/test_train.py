"""The DiffMimic trainer: real physics, real gradients, one compile for many clips, outputs on disk.

One tiny configuration is compiled once per session (module-scoped) and shared by every test;
the persistent compilation cache (tests/conftest.py) keeps it across pytest processes.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmimic.env import ref_arrays
from diffmimic.evaluate import main as evaluate_main
from diffmimic.mocap.retarget import load_reference
from diffmimic.mocap.sample import write_sample_dataset
from diffmimic.train import compiled_functions, make_config, make_curriculum, train
from diffmimic.train_cli import main as train_main

TINY = dict(num_envs=2, horizon=4, hidden=(32, 32), eval_every=2, iterations=2)


@pytest.fixture(scope="module")
def sample_references(tmp_path_factory):
    clips = {p.name.removesuffix("_poses.npz"): p for p in write_sample_dataset(tmp_path_factory.mktemp("sample"))}
    return {name: load_reference(path) for name, path in clips.items()}, clips


@pytest.fixture(scope="module")
def tiny_config():
    return make_config("cpu", **TINY)


@pytest.mark.slow
def test_gradient_through_the_rollout_is_finite_and_nonzero(sample_references, tiny_config):
    references, _ = sample_references
    functions = compiled_functions(tiny_config)
    ref = functions.prepared(ref_arrays(references["squat"]))  # as a clip's run holds it
    state = functions.init(jax.random.PRNGKey(0), 10)
    curriculum = make_curriculum(tiny_config, references["squat"].num_frames, ref.bucket)
    new_state, metrics = functions.train_step(state, ref, curriculum)
    assert np.isfinite(float(metrics.loss)) and float(metrics.loss) > 0
    assert np.isfinite(float(metrics.grad_norm)) and float(metrics.grad_norm) > 0
    assert not bool(metrics.update_skipped)
    # The update really moved the parameters, and the physics really ran (bodies moved).
    delta = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new_state.params, state.params)
    assert max(jax.tree.leaves(delta)) > 0


@pytest.mark.slow
def test_two_clips_share_one_compiled_step(sample_references, tiny_config):
    references, _ = sample_references
    before = dict(compiled_functions(tiny_config).trace_counts)
    for name in ("squat", "arm_swings"):
        config = make_config("cpu", **{**TINY, "iterations": 2, "seed": len(name)})  # other run length, seed
        result = train(references[name], config, progress=None)
        assert result.iterations == 2 and np.isfinite(result.metrics.pose_error_m)
    counts = compiled_functions(tiny_config).trace_counts
    # Compiled at most once for the whole module (zero here if an earlier test compiled it).
    assert counts["train_step"] <= 1 and counts["eval_rollout"] <= 1
    assert counts["train_step"] - before.get("train_step", 0) <= 1


@pytest.mark.slow
def test_the_reference_physics_is_prepared_once_and_control_steps_only_index_it(
    sample_references, tiny_config, monkeypatch
):
    references, _ = sample_references
    env = compiled_functions(tiny_config).env
    ref = ref_arrays(references["squat"])
    prepared = compiled_functions(tiny_config).prepared(ref)
    assert jax.tree.leaves(prepared.physics)[0].shape[0] == ref.bucket
    assert prepared.target_features.shape == (ref.bucket, 361)
    # Same starts, observations and replayed steps as building each frame on the fly.
    start, start_p = (env.reset(r, jax.random.PRNGKey(1), frame=7) for r in (ref, prepared))
    np.testing.assert_allclose(np.asarray(start_p.physics.x.pos), np.asarray(start.physics.x.pos), atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(env.observe(start_p, prepared)), np.asarray(env.observe(start, ref)), atol=1e-5
    )
    action = 0.3 * jnp.ones(env.action_size)
    (moved, metrics), (moved_p, metrics_p) = (
        env.step(start, action, r, replay_threshold_m=0.0) for r in (ref, prepared)
    )
    assert bool(metrics.replayed) and bool(metrics_p.replayed)  # replay really took the reference state
    np.testing.assert_allclose(np.asarray(moved_p.physics.q), np.asarray(moved.physics.q), atol=1e-5)
    np.testing.assert_allclose(float(metrics_p.loss), float(metrics.loss), rtol=1e-5)
    # Traced: a step on the prepared reference builds no physics state (it indexes one).
    pipe = env._pipeline
    built = []
    counting = type(
        "Counting",
        (),
        {"init": staticmethod(lambda *a: built.append(1) or pipe.init(*a)), "step": staticmethod(pipe.step)},
    )
    monkeypatch.setattr(env, "_pipeline", counting)
    jax.make_jaxpr(lambda s: env.step(s, action, prepared))(start)
    assert built == []
    jax.make_jaxpr(lambda s: env.step(s, action, ref))(start)
    assert built == [1]


@pytest.mark.slow
def test_nan_physics_is_detected_replaced_and_counted(sample_references, tiny_config):
    references, _ = sample_references
    env = compiled_functions(tiny_config).env
    ref = ref_arrays(references["squat"])
    state = env.reset(ref, jax.random.PRNGKey(1), frame=3)
    poisoned = state.replace(physics=state.physics.replace(qd=state.physics.qd.at[10].set(jnp.nan)))
    step = jax.jit(env.step)
    next_state, metrics = step(poisoned, jnp.zeros(env.action_size), ref)
    assert bool(metrics.nonfinite) and bool(metrics.fell)
    assert np.isfinite(np.asarray(next_state.physics.q)).all()
    np.testing.assert_allclose(np.asarray(next_state.physics.q), np.asarray(ref.qpos[4]), atol=1e-5)
    assert np.isfinite(float(metrics.loss))


@pytest.mark.slow
def test_cli_writes_outputs_and_evaluate_reads_them(sample_references, tmp_path, capsys, monkeypatch):
    _, clips = sample_references
    monkeypatch.setattr("diffmimic.config.PRESETS", {"cpu": TINY, "paper": {}})
    out = tmp_path / "run"
    assert (
        train_main(
            [str(clips["idle_sway"]), "--out", str(out), "--preset", "cpu", "--duration-s", "3.0", "--seed", "3"]
        )
        == 0
    )  # 91 frames: the bucket (128) of the other tests
    result = json.loads((out / "result.json").read_text())
    for key in (
        "pose_error_m",
        "initial_pose_error_m",
        "fell",
        "samples",
        "train_s",
        "compile_s",
        "iterations",
        "backend",
    ):
        assert key in result
    assert result["samples"] == 2 * 2 * 4
    assert (out / "checkpoint").is_dir() and (out / "reference.npz").is_file()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records and records[-1]["iteration"] == 2
    assert json.loads((out / "config.json").read_text())["num_envs"] == 2
    capsys.readouterr()
    assert evaluate_main([str(out)]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["pose_error_m"] == pytest.approx(result["pose_error_m"], rel=1e-4, abs=1e-5)
    # Beyond the clip: a cyclic loop of it.
    assert evaluate_main([str(out), "--seconds", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 150
    assert evaluate_main([str(tmp_path / "nothing")]) == 2


@pytest.mark.slow
def test_demonstration_replay_modes(sample_references):
    """threshold at 0 m replays every step, `none` never does, and a replay puts the body exactly
    in the reference state of the frame it reached."""
    import dataclasses

    from diffmimic.env import EnvConfig, MimicEnv
    from diffmimic.physics import backend_character

    references, _ = sample_references
    ref = ref_arrays(references["march_in_place"])
    character = backend_character(EnvConfig().backend)
    # A large residual action: the body leaves the reference at once.
    action = jnp.full((69,), 0.8)
    for replay, threshold, expect in (("threshold", 0.0, True), ("threshold", 10.0, False), ("none", 0.0, False)):
        env = MimicEnv(character, dataclasses.replace(EnvConfig(), replay=replay, replay_threshold_m=threshold))
        state = env.reset(ref, jax.random.PRNGKey(0), frame=10)
        next_state, metrics = jax.jit(env.step)(state, action, ref)
        assert bool(metrics.replayed) is expect, (replay, threshold)
        assert float(metrics.global_error_m) > 0.0  # the physics really moved the body off
        if expect:
            np.testing.assert_allclose(np.asarray(next_state.physics.q), np.asarray(ref.qpos[11]), atol=1e-5)
        else:
            assert float(jnp.abs(next_state.physics.q - ref.qpos[11]).max()) > 1e-3


@pytest.mark.slow
def test_start_distribution_is_data_and_moves_rollouts_to_the_trouble(sample_references, tiny_config):
    """Start frames follow the curriculum's distribution (one compile for any distribution), and
    after an evaluation that drifted or fell the adaptive trainer moves its starts toward where
    it did, while uniform RSI stays put."""
    references, _ = sample_references
    reference = references["squat"]
    functions = compiled_functions(tiny_config)
    ref = ref_arrays(reference)
    probs = np.zeros(ref.bucket)
    probs[[7, 40]] = [0.25, 0.75]
    reset = jax.jit(jax.vmap(lambda k, p: functions.env.reset(ref, k, start_probs=p), in_axes=(0, None)))
    starts = np.asarray(reset(jax.random.split(jax.random.PRNGKey(0), 400), jnp.asarray(probs)).t)
    assert set(starts.tolist()) == {7, 40} and 0.65 < np.mean(starts == 40) < 0.85

    means = {}
    for sampling in ("uniform", "adaptive"):
        config = make_config(
            "cpu", **{**TINY, "iterations": 4, "eval_every": 2, "start_sampling": sampling, "focus_share": 1.0}
        )
        result = train(reference, config, progress=None)
        means[sampling] = [r["start_frame_mean"] for r in result.history]
    uniform_mean = (reference.num_frames - 1 - TINY["horizon"]) / 2
    assert means["uniform"] == [pytest.approx(uniform_mean)] * 2
    assert all(abs(m - uniform_mean) > 1.0 for m in means["adaptive"]), means
    assert compiled_functions(tiny_config).trace_counts["train_step"] <= 1  # sampling is data


@pytest.mark.slow
def test_warm_start_begins_where_the_given_policy_is(sample_references, tiny_config):
    references, _ = sample_references
    reference = references["arm_swings"]
    first = train(reference, make_config("cpu", **{**TINY, "iterations": 2}), progress=None)
    warm = train(
        reference,
        make_config("cpu", **{**TINY, "iterations": 2, "seed": 5}),
        progress=None,
        init_policy=(first.params, first.normaliser),
    )
    # The warm start's "initial" evaluation is the given policy's, not a fresh network's.
    assert warm.initial_metrics.pose_error_m == pytest.approx(first.metrics.pose_error_m, rel=1e-5)
    with pytest.raises(ValueError, match="shapes"):
        other = make_config("cpu", **{**TINY, "hidden": (16, 16)})
        train(reference, other, progress=None, init_policy=(first.params, first.normaliser))


def test_config_schema_round_trips_and_reads_older_and_unknown_fields():
    from diffmimic.train import CONFIG_SCHEMA, TrainConfig

    config = make_config("cpu", seed=7, env={"replay_threshold_m": 0.1})
    data = json.loads(json.dumps(config.to_dict()))
    assert data["schema"] == CONFIG_SCHEMA and TrainConfig.from_dict(data) == config
    # A version-1 file (no schema key, without fields added since, with one since removed) loads.
    old = {k: v for k, v in data.items() if k not in ("schema", "warm_start_learning_rate_scale", "robust_rollouts")}
    old["env"] = {k: v for k, v in data["env"].items() if k not in ("train_perturbed_share", "train_push_share")}
    old["retired_knob"] = 1
    with pytest.warns(UserWarning, match="retired_knob"):
        loaded = TrainConfig.from_dict(old)
    assert loaded.seed == 7 and loaded.env.replay_threshold_m == 0.1
    assert loaded.warm_start_learning_rate_scale == TrainConfig.warm_start_learning_rate_scale
    # Fields added later read as what the older config did: no robust training, no robustness check.
    assert loaded.robust_rollouts == 0 and loaded.env.train_perturbed_share == 0.0 == loaded.env.train_push_share
    assert TrainConfig().robust_rollouts > 0 and TrainConfig().env.train_perturbed_share > 0
    # A user's overrides are strict: a typo is an error naming it, not a silent default.
    with pytest.raises(ValueError, match="lerning_rate"):
        TrainConfig.from_dict({**data, "lerning_rate": 1e-3}, strict=True)
    with pytest.raises(ValueError, match="eval_every"):
        make_config("cpu", eval_every=0)


@pytest.mark.slow
def test_polishing_evaluates_at_its_cadence_and_learning_rate(sample_references, tiny_config):
    """From the first evaluation that meets the target, the run evaluates at the polishing
    cadence (`polish_eval_cadence`) and steps at `polish_learning_rate_scale` of the rate; a
    step of the compiled function really moves the parameters by that share (no recompile: it
    is data)."""
    from diffmimic.train import polish_eval_cadence

    references, _ = sample_references
    reference = references["arm_swings"]
    config = make_config(
        "cpu",
        **{
            **TINY,
            "iterations": 12,
            "eval_every": 3,
            "polish_eval_every": 1,
            "polish_pose_error_m": 0.0,
            "polish_learning_rate_scale": 0.25,
        },
    )
    functions = compiled_functions(config)
    state = functions.init(jax.random.PRNGKey(0), config.iterations)
    # A policy whose actions are zero holds the reference's PD targets: it tracks this in-place
    # clip without falling, so the first evaluation (iteration 3) meets a loose target.
    still = jax.tree.map(jnp.zeros_like, state.params)
    result = train(reference, config, progress=None, stop_at_pose_error_m=1.0, init_policy=(still, state.normaliser))
    history = [(r["iteration"], r["fell"], r["polishing"], r["learning_rate_scale"]) for r in result.history]
    # The tiny config simulates 2 x 4 steps per iteration, the evaluations 2 x 119: every 30th.
    cadence = polish_eval_cadence(config, reference.num_frames)
    assert cadence == 30 and [i for i, *_ in history] == [3, 12], history
    warm_and_polishing = config.warm_start_learning_rate_scale * 0.25
    assert all(
        not fell and polishing and scale == pytest.approx(warm_and_polishing) for _, fell, polishing, scale in history
    ), history

    ref = functions.prepared(ref_arrays(reference))
    moved = {}
    for polishing in (False, True):
        curriculum = make_curriculum(config, reference.num_frames, ref.bucket, polishing=polishing)
        new_state, _ = functions.train_step(state, ref, curriculum)
        moved[polishing] = _distance(new_state.params, state.params)
    assert moved[False] > 0 and moved[True] == pytest.approx(0.25 * moved[False], rel=1e-3)
    assert compiled_functions(tiny_config).trace_counts["train_step"] <= 1


def _distance(a, b) -> float:
    return float(sum(jnp.sum(jnp.abs(x - y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))
