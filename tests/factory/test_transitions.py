"""Hand-over by state, the transition graph (simulated, stored beside the index, incremental),
routes through other clips and random walks along it."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _still(policy, clip_id: str):
    """`policy` with zero actions: the PD targets are its reference's, which holds these in-place
    sample clips without a fall (a policy whose hand-overs survive, without training one)."""
    params = jax.tree.map(jnp.zeros_like, policy.params)
    record = dataclasses.replace(policy.record, clip_id=clip_id, name=clip_id.rsplit("/", 1)[-1])
    return dataclasses.replace(policy, params=params, record=record)


def _lifted(policy, clip_id: str, height: float = 1.0):
    """`policy` tracking its clip 1 m in the air: unreachable, so entering it always falls."""
    ref = policy.reference
    qpos, body_pos = ref.qpos.copy(), ref.body_pos.copy()
    qpos[:, 2] += height
    body_pos[..., 2] += height
    record = dataclasses.replace(policy.record, clip_id=clip_id, name=clip_id.rsplit("/", 1)[-1])
    return dataclasses.replace(policy, reference=dataclasses.replace(ref, qpos=qpos, body_pos=body_pos), record=record)


@pytest.fixture(scope="module")
def library(tmp_path_factory, trained, put_trained):
    from factory.library import PolicyLibrary

    library = PolicyLibrary(tmp_path_factory.mktemp("transitions") / "lib", create=True)
    put_trained(library, "sample/squat_poses", trained["squat"], status="converged")
    put_trained(library, "sample/wave_poses", trained["wave"], status="converged")
    return library


@pytest.fixture(scope="module")
def policies(library):
    squat, wave = library.load_policy("squat_poses"), library.load_policy("wave_poses")
    return {
        "sample/squat_poses": _still(squat, "sample/squat_poses"),
        "sample/wave_poses": _still(wave, "sample/wave_poses"),
        "test/lifted": _lifted(_still(squat, "test/lifted"), "test/lifted"),
    }


def test_entry_costs_find_the_frame_of_a_state_and_weigh_velocity_and_feet(trained):
    from factory.compose import entry_costs, planted_feet, pose_distances

    reference = trained["squat"].reference
    frame = 40
    costs = entry_costs(reference.body_pos[frame], reference.body_rot[frame], reference.body_vel[frame], reference)
    assert int(np.argmin(costs)) == frame and costs[frame] == pytest.approx(0.0, abs=1e-9)
    # A squat passes each pose twice (down and up): pose alone cannot tell them apart, the
    # velocity can: the cost of the frame moving the other way is higher than its pose distance.
    pose = pose_distances(reference.body_pos[frame], reference.body_rot[frame], reference)
    assert np.all(costs >= pose - 1e-12) and (costs - pose).max() > 0
    # Standing in place, both feet are planted; lifted 0.3 m, neither is.
    feet = planted_feet(reference.body_pos, reference.body_vel, reference.body_names)
    assert feet.shape == (reference.num_frames, 2) and feet[frame].all()
    lifted = reference.body_pos[frame] + np.array([0.0, 0.0, 0.3])
    assert not planted_feet(lifted, reference.body_vel[frame], reference.body_names).any()


def test_graph_rows_round_trip_and_route_through_other_clips(tmp_path):
    from factory.library.transitions import Transition, TransitionGraph

    def edge(a, b, survived, cost=0.05, exit=30):
        return Transition(a, 1, b, 1, exit, 5, cost, survived, None if survived else 0.4, 2.0)

    graph = TransitionGraph(tmp_path, {"d/a": 1, "d/b": 1, "d/c": 1})
    assert graph.all() == [] and graph.route("d/a", "d/c") is None
    graph.put(
        [
            edge("d/a", "d/c", False),
            edge("d/a", "d/b", True),
            edge("d/b", "d/c", True),
            edge("d/a", "d/b", False, cost=0.01, exit=10),
            Transition("d/a", 0, "d/c", 1, 1, 1, 0.0, True, None, 2.0),
        ]
    )
    best = graph.best()
    assert best[("d/a", "d/b")].survived and best[("d/a", "d/b")].exit_frame == 30  # survived beats cheaper
    assert not best[("d/a", "d/c")].survived  # the old version's surviving row is not current
    assert [t.to_clip for t in graph.route("d/a", "d/c")] == ["d/b", "d/c"]
    assert graph.route("d/c", "d/a") is None and graph.route("d/a", "d/a") == []
    reopened = TransitionGraph(tmp_path, {"d/a": 1, "d/b": 1, "d/c": 1})
    assert reopened.all() == graph.all() and len(TransitionGraph(tmp_path).all()) == 5


def test_build_simulates_each_pair_once_and_never_guesses(library, policies):
    from factory.compose import build_transitions, exit_candidates

    candidates = exit_candidates(policies["sample/squat_poses"], policies["sample/wave_poses"])
    assert 1 <= len(candidates) <= 3 and candidates == sorted(candidates, key=lambda c: c[2])
    lines = []
    graph = build_transitions(library, policies, candidates=2, window_s=1.0, progress=lines.append)
    assert len(lines) == 6  # every ordered pair of three clips
    best = graph.best()
    assert len(best) == 6
    # Nothing enters the unreachable clip and survives; the still policies hand over and hold.
    assert all(
        not t.survived and t.fell_at_s is not None and t.fell_at_s <= 1.0 + 1e-6
        for (a, b), t in best.items()
        if b == "test/lifted"
    )
    assert best[("sample/squat_poses", "sample/wave_poses")].survived
    for t in best.values():
        if t.survived:
            assert 0 <= t.entry_frame < policies[t.to_clip].reference.num_frames - 1
    # Incremental: a second build simulates nothing.
    again = []
    build_transitions(library, policies, progress=again.append)
    assert again == []


def test_random_walk_follows_surviving_edges_and_plan_routes(library, policies, tmp_path, capsys):
    from factory.compose import build_transitions, compose_route, plan, random_walk
    from factory.library.cli import main as library_main

    build_transitions(library, policies, candidates=2, window_s=1.0, progress=None)  # kept if built already
    composition, outcome = random_walk(library, 8.0, seed=1, policies=policies)
    assert outcome in ("completed", "fell", "dead_end")
    segments = composition.segments
    assert all(s.clip_id != "test/lifted" for s in segments)  # no surviving edge leads there
    if outcome == "completed":
        assert composition.trajectory.seconds == pytest.approx(8.0, abs=1 / 30)
        assert not composition.fell and len(segments) >= 2
    route = plan(library, ["squat_poses", "wave_poses", "squat_poses"], policies=policies)
    assert route[0] == "sample/squat_poses" and route[-1] == "sample/squat_poses" and "sample/wave_poses" in route
    composed = compose_route(library, route, policies=policies)
    played = [s.clip_id for s in composed.segments]
    assert played == route[: len(played)] and len(played) >= 2  # the route, up to a fall if one came
    assert composed.not_run == tuple(route[len(played) :]) and (composed.fell or len(played) == len(route))

    assert library_main(["--library", str(library.root), "transitions", "squat_poses"]) == 0
    out = capsys.readouterr().out
    assert "wave_poses" in out and "hand-overs out of sample/squat_poses survive" in out
    assert library_main(["--library", str(library.root), "transitions", "squat_poses", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["to_clip"] for r in rows} == {"sample/wave_poses"}  # only current library policies
