"""K clips in one compiled step (`diffmimic.multiclip.train_many`): each clip gets what it gets
trained alone, slots refill without recompiling."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from diffmimic.mocap.retarget import load_reference
from diffmimic.mocap.sample import write_sample_dataset
from diffmimic.multiclip import ClipTask, train_many
from diffmimic.train import compiled_functions, make_config, train

TINY = dict(num_envs=2, horizon=4, hidden=(32, 32), eval_every=2, iterations=2)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    clips = {p.name.removesuffix("_poses.npz"): p for p in write_sample_dataset(tmp_path_factory.mktemp("sample"))}
    return {name: load_reference(path) for name, path in clips.items()}


def _same(tree, other, rtol: float = 1e-2) -> None:
    """Two training states agree to rounding: parameters to 1e-4 (each moved ~1e-3 by Adam's
    first step), gradient moments to 1e-2 (a gradient through 64 contact substeps, rounded
    differently by batched kernels). Where a gradient is ~0 rounding decides its moments and
    the sign of Adam's step: under 1 % of the elements (0.5 % measured) may differ, by at most
    two steps."""
    values = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)])
    others = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(other)])
    assert values.shape == others.shape
    off = ~np.isclose(values, others, rtol=rtol, atol=1e-9)
    assert off.mean() < 1e-2, f"{off.sum()} of {off.size} differ"
    assert np.abs(values - others).max() < 2.5e-3  # two steps of Adam at the preset's 1e-3


@pytest.mark.slow
def test_clips_trained_together_match_each_trained_alone(references):
    # Three clips of different run lengths and seeds in two slots: the shortest finishes first and
    # its slot is refilled while the other runs on.
    plan = {"squat": (2, 1), "arm_swings": (6, 2), "wave": (4, 3)}
    calm = dict(TINY, eval_every=1)  # a record of every iteration
    configs = {name: make_config("cpu", **{**calm, "iterations": n, "seed": seed}) for name, (n, seed) in plan.items()}
    # Threshold replay is a discontinuity (a body 0.2 m off is reset, one 0.199 m off is not) that
    # turns rounding differences into different rollouts: off here, so "the same" can be checked.
    no_replay = 1e3
    # Every iteration's training state (but the last's) comes out through the checkpoint hook.
    states_alone: dict[str, list] = {name: [] for name in plan}
    alone = {
        name: train(
            references[name],
            configs[name],
            progress=None,
            replay_threshold_m=no_replay,
            checkpoint_every=1,
            on_checkpoint=lambda snap, n=name: states_alone[n].append(snap.state),
        )
        for name in plan
    }

    base = make_config("cpu", **calm)
    before = dict(compiled_functions(base).trace_counts)
    records: dict[str, list] = {name: [] for name in plan}
    states_together: dict[str, list] = {name: [] for name in plan}
    tasks = [
        ClipTask(
            references[name],
            configs[name],
            tag=name,
            on_evaluation=records[name].append,
            replay_threshold_m=no_replay,
            checkpoint_every=1,
            on_checkpoint=lambda snap, n=name: states_together[n].append(snap.state),
        )
        for name in plan
    ]
    finished = list(train_many(tasks, base, slots=2))
    counts = compiled_functions(base).trace_counts

    assert [task.tag for task, _ in finished] == ["squat", "wave", "arm_swings"]  # in the order they finish
    assert counts["train_step_batch"] - before["train_step_batch"] <= 1  # the refill did not retrace
    for task, together in finished:
        single = alone[task.tag]
        assert together.iterations == single.iterations == plan[task.tag][0]
        assert together.samples == single.samples
        assert [r["iteration"] for r in together.history] == [r["iteration"] for r in single.history]
        assert [int(s.iteration) for s in states_together[task.tag]] == [
            int(s.iteration) for s in states_alone[task.tag]
        ]
        assert len(states_together[task.tag]) == plan[task.tag][0] - 1
        # The first iteration starts from the same state: its rollouts (the slot's own keys,
        # reference and start distribution) give what they give alone, to rounding. Rounding is
        # what the rollouts amplify: wave's first loss moves by 1.8e-4 (relative) when its
        # parameters are scaled by 1 + 1e-7 noise (squat's by 1e-5), so 1e-3 here.
        first, first_alone = together.history[0], single.history[0]
        assert first["iteration"] == first_alone["iteration"] == 1
        for name, tolerance in (("loss", 1e-3), ("train_pose_error_m", 1e-3), ("grad_norm", 1e-3)):
            assert first[name] == pytest.approx(first_alone[name], rel=tolerance), name
        # And so does the training state after it: parameters, their average, Adam's moments.
        # Later iterations start from states a rounding apart (batched kernels round differently)
        # and the tiny untrained network amplifies it: its observation normaliser, updated from 8
        # observations, divides by near-zero spreads, bodies fall, and by the second iteration
        # losses can be 20 % apart. They are not compared.
        mine, theirs = states_together[task.tag][0], states_alone[task.tag][0]
        _same((mine.params, mine.ema_params, mine.opt_state), (theirs.params, theirs.ema_params, theirs.opt_state))
        _same(mine.params, theirs.params, rtol=1e-4)
        assert records[task.tag] == together.history  # per-clip callbacks
    # Real training: every clip's first step had a finite, non-zero gradient.
    assert all(0 < result.history[0]["grad_norm"] < float("inf") for _, result in finished)


def test_a_task_that_cannot_join_the_batch_is_reported_not_raised(references):
    base = make_config("cpu", **TINY)
    other_network = make_config("cpu", **{**TINY, "hidden": (16, 16)})
    finished = list(train_many([ClipTask(references["squat"], other_network, tag="other")], base, slots=2))
    assert len(finished) == 1 and finished[0][0].tag == "other"
    assert isinstance(finished[0][1], ValueError) and "config" in str(finished[0][1])
    with pytest.raises(ValueError, match="slots"):
        list(train_many([], base, slots=0))


def test_choose_slots_takes_the_last_k_that_still_paid():
    from diffmimic.multiclip import choose_slots

    curve = lambda *rates: [{"slots": 2**i, "samples_per_s": r} for i, r in enumerate(rates)]
    assert choose_slots(curve(100, 190, 300, 310)) == 4  # 8 slots gained 3 %: not worth its memory
    assert choose_slots(curve(100, 105)) == 1
    assert choose_slots(curve(100, 200, 150, 400)) == 2  # the first K that stopped paying ends it
    assert choose_slots(curve(100, 111, 123)) == 4  # 11 % each time still pays
    assert choose_slots(curve(100)) == 1
    with pytest.raises(ValueError):
        choose_slots([])
