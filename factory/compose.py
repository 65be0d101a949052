"""Skill composition: library policies run one after another in one simulation.

`compose(library, ["walk", "kick", "walk"])` simulates the first policy from its clip's start
frame; at each switch the next policy takes over the *current simulated state* (the physics state
itself, not a reset), entering its clip at the phase whose reference pose is nearest to the
character's current pose (body positions relative to the root, in the root's heading frame), and
its reference is re-anchored (rotated about the vertical and shifted horizontally) so that frame
starts at the character's position and heading. Falls are part of the result: each segment says
whether and when it fell, and a fall within `transition_window_s` of a switch is a failed
transition. By default the composition stops at the first fall; the segments not run are listed.

`transition_pairs(library, names)` composes every ordered pair of policies and measures the
transition success rate (`scripts/bench_compose.py`, README).

CLI::

    python -m factory.compose --library LIB walk kick walk --out walk_kick_walk.npz [--seconds 3]
    python -m factory.compose --library LIB --pairs [NAME ...] --out pairs.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from diffmimic import atomic
from factory.library import LibraryError, Policy, PolicyLibrary, character_dict, default_root


class CompositionError(LibraryError):
    """Policies that cannot share one simulation (different characters or control rates), or bad
    composition arguments."""


@dataclasses.dataclass(frozen=True)
class Segment:
    """One policy's part of a composition.

    Steps `start_step` .. `end_step - 1` of the composed trajectory are this policy's; the states
    they produce are `start_step + 1` .. `end_step` (state `start_step` is the hand-over state).
    `entry_frame` is the clip frame it entered at and `entry_distance_m` the mean body distance
    (root-relative, heading-aligned) between the hand-over pose and that frame's pose.
    `fell_at_s` counts from the start of the composition; `transition_fell` says it fell within
    the transition window after taking over (never for the first segment).
    """

    index: int
    name: str
    clip_id: str
    version: int
    status: str
    start_step: int
    end_step: int
    entry_frame: int
    entry_distance_m: float
    pose_error_m: float
    fell: bool
    fell_at_s: float | None
    transition_fell: bool
    fps: float

    @property
    def start_s(self) -> float:
        return self.start_step / self.fps

    @property
    def end_s(self) -> float:
        return self.end_step / self.fps

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "start_s": self.start_s, "end_s": self.end_s}


@dataclasses.dataclass(frozen=True)
class Composition:
    """A composed rollout: the trajectory (all segments, one simulation), its segments, and the
    names that were not run because the character fell before them."""

    trajectory: object  # diffmimic.rollout.Trajectory
    segments: tuple[Segment, ...]
    not_run: tuple[str, ...]
    transition_window_s: float
    character: dict | None = None  # the character config (as in the library index)

    @property
    def fell(self) -> bool:
        return any(s.fell for s in self.segments)

    @property
    def failed_transitions(self) -> int:
        return sum(s.transition_fell for s in self.segments)

    @property
    def title(self) -> str:
        return " > ".join(s.name for s in self.segments) + (" (stopped: fell)" if self.not_run else "")

    def summary(self) -> dict:
        fell = next((s for s in self.segments if s.fell), None)
        return {
            "title": self.title, "kind": "composition", "seconds": self.trajectory.seconds,
            "steps": self.trajectory.steps, "fps": self.trajectory.fps,
            "pose_error_m": self.trajectory.metrics.pose_error_m, "fell": self.fell,
            "fell_at_s": None if fell is None else fell.fell_at_s,
            "fell_in_segment": None if fell is None else fell.index,
            "transitions": len(self.segments) - 1, "failed_transitions": self.failed_transitions,
            "transition_window_s": self.transition_window_s,
            "segments": [s.to_dict() for s in self.segments], "not_run": list(self.not_run),
            "character": self.character}

    def save(self, path: str | os.PathLike) -> Path:
        """The trajectory .npz (renderable by `python -m factory.library render`) with the
        summary inside, and the summary beside it as `<path>.json`."""
        path = Path(path)
        summary = self.summary()
        out = self.trajectory.save(path, meta=summary)
        atomic.write_json(path.with_name(path.name + ".json"), summary)
        return out


# --------------------------------------------------------------------------------------------
# Pose matching and re-anchoring (numpy, pure).

def heading_yaw(root_rot_wxyz: np.ndarray) -> np.ndarray:
    """Yaw (rad) of the root's forward (x) axis projected on the ground, for (..., 4) wxyz."""
    q = np.asarray(root_rot_wxyz, np.float64)
    w, x, y, z = (q[..., i] for i in range(4))
    forward_x = 1 - 2 * (y * y + z * z)
    forward_y = 2 * (x * y + w * z)
    return np.arctan2(forward_y, forward_x)


def _rotate_z(vectors: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Rotates (..., 3) vectors about +z by `yaw` (broadcast over the leading axes)."""
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    x, y = vectors[..., 0], vectors[..., 1]
    return np.stack([c[..., 0] * x - s[..., 0] * y, s[..., 0] * x + c[..., 0] * y, vectors[..., 2]], -1)


def heading_frame_pose(body_pos: np.ndarray, body_rot: np.ndarray) -> np.ndarray:
    """Body positions relative to the root, in the root's heading frame: (..., 24, 3)."""
    body_pos = np.asarray(body_pos, np.float64)
    yaw = heading_yaw(np.asarray(body_rot)[..., 0, :])
    return _rotate_z(body_pos - body_pos[..., :1, :], -yaw[..., None])


def pose_distances(body_pos: np.ndarray, body_rot: np.ndarray, reference) -> np.ndarray:
    """Mean body distance (m) between one pose (24, 3)/(24, 4) and every frame of `reference`,
    both root-relative and heading-aligned: (frames,)."""
    current = heading_frame_pose(body_pos, body_rot)
    frames = heading_frame_pose(reference.body_pos, reference.body_rot)
    return np.linalg.norm(frames - current[None], axis=-1).mean(-1)


def reanchor(reference, frame: int, root_xy: np.ndarray, yaw: float):
    """`reference` rotated about the vertical and shifted so that at `frame` its root is at
    `root_xy` with heading `yaw` (heights unchanged). Returns a new `Reference`."""
    delta = float(yaw - heading_yaw(reference.body_rot[frame, 0]))
    pivot = np.asarray(reference.body_pos[frame, 0, :2], np.float64)
    shift = np.asarray(root_xy, np.float64)

    def move(points):  # (..., 3) positions
        points = np.asarray(points, np.float64).copy()
        points[..., :2] -= pivot
        points = _rotate_z(points, np.float64(delta))
        points[..., :2] += shift
        return points

    turn = Rotation.from_euler("z", delta)

    def turn_quats(wxyz):  # (..., 4) world orientations: premultiply by the yaw
        flat = np.asarray(wxyz, np.float64).reshape(-1, 4)
        turned = (turn * Rotation.from_quat(flat[:, [1, 2, 3, 0]])).as_quat()[:, [3, 0, 1, 2]]
        return turned.reshape(np.shape(wxyz))

    qpos = np.asarray(reference.qpos, np.float64).copy()
    qpos[:, :3] = move(qpos[:, :3])
    qpos[:, 3:7] = turn_quats(qpos[:, 3:7])
    qvel = np.asarray(reference.qvel, np.float64).copy()
    qvel[:, :3] = _rotate_z(qvel[:, :3], np.float64(delta))  # root linear velocity is in the world frame
    # (root angular velocity is in the body frame: unchanged)
    return dataclasses.replace(
        reference, qpos=qpos, qvel=qvel, body_pos=move(reference.body_pos), body_rot=turn_quats(reference.body_rot),
        body_vel=_rotate_z(np.asarray(reference.body_vel, np.float64), np.float64(delta)),
        body_ang=_rotate_z(np.asarray(reference.body_ang, np.float64), np.float64(delta)))


# --------------------------------------------------------------------------------------------
# Composition.

def _segment_seconds(seconds, count: int) -> list[float | None]:
    if seconds is None or isinstance(seconds, (int, float)):
        return [seconds] * count
    seconds = list(seconds)
    if len(seconds) == 1:
        return seconds * count
    if len(seconds) != count:
        raise CompositionError(f"give one duration or one per segment ({count}), got {len(seconds)}")
    return seconds


def _check_compatible(policies: Sequence[Policy]) -> None:
    first = policies[0]
    for policy in policies[1:]:
        if policy.character_config != first.character_config:
            raise CompositionError(f"{policy.record.ref} and {first.record.ref} were trained on different "
                                   "characters; they cannot share one simulation")
        if policy.config.env.control_hz != first.config.env.control_hz or \
                policy.config.env.substeps != first.config.env.substeps:
            raise CompositionError(f"{policy.record.ref} and {first.record.ref} run at different control or "
                                   "simulation rates")


def compose(library: PolicyLibrary, names: Sequence[str], seconds: float | Sequence[float | None] | None = None, *,
            start_frame: int = 0, min_segment_s: float = 1.0, transition_window_s: float = 1.0,
            stop_on_fall: bool = True, versions: Sequence[int | None] | None = None,
            policies: dict[str, Policy] | None = None) -> Composition:
    """Runs the library policies `names` one after another in one simulation.

    Args:
      library: the policy library.
      names: clip names (ids, unique short names or path suffixes); repeats are allowed.
      seconds: how long each segment runs: None (the default) runs a segment from its entry frame
        to its clip's end; a number or one per segment runs that long, looping the clip past its
        end (for cyclic clips).
      start_frame: the first clip's start frame.
      min_segment_s: with `seconds` None, a segment may only enter its clip at a frame that leaves
        at least this long (or the whole clip, when it is shorter) before its end.
      transition_window_s: a fall this soon after a switch is a failed transition.
      stop_on_fall: stop at the first fall (the remaining names are reported as not run).
      versions: the policy version of each name (None: newest).
      policies: already loaded policies by name (loaded from the library when absent).

    Returns:
      A `Composition`.
    """
    import jax

    from diffmimic.metrics import loop_reference, summarize_rollout
    from diffmimic.rollout import Trajectory, initial_physics, simulate

    if not names:
        raise CompositionError("nothing to compose: give at least one policy name")
    durations = _segment_seconds(seconds, len(names))
    versions = list(versions) if versions is not None else [None] * len(names)
    loaded: dict = dict(policies or {})
    chain = []
    for name, version in zip(names, versions):
        key = name if version is None else f"{name}@{version}"
        if key not in loaded:
            loaded[key] = library.load_policy(name, version)
        chain.append(loaded[key])
    _check_compatible(chain)

    fps = float(chain[0].reference.fps)
    states = {"qpos": [], "body_pos": [], "body_rot": [], "reference_body_pos": [], "reference_body_rot": []}
    steps_metrics: list = []
    segments: list[Segment] = []
    physics = None
    backend = None
    step = 0
    not_run: tuple[str, ...] = ()
    for index, (name, policy, duration) in enumerate(zip(names, chain, durations)):
        reference = policy.reference
        frames = reference.num_frames
        if frames < 2:
            raise CompositionError(f"{policy.record.ref}: its clip has {frames} frame(s)")
        if duration is not None and duration <= 0:
            raise CompositionError(f"segment {index + 1} ({name}): seconds must be > 0, got {duration}")
        if index == 0:
            if not 0 <= start_frame < frames - 1:
                raise CompositionError(f"start_frame must be in [0, {frames - 2}] for {policy.record.ref}")
            entry, distance = start_frame, 0.0
            physics = initial_physics(policy.config, policy.character_config, reference.qpos[entry],
                                      reference.qvel[entry])
            x0 = jax.device_get(physics.x)
            states["qpos"].append(np.asarray(jax.device_get(physics.q))[None])
            states["body_pos"].append(np.asarray(x0.pos)[None])
            states["body_rot"].append(np.asarray(x0.rot)[None])
            states["reference_body_pos"].append(np.asarray(reference.body_pos[entry])[None])
            states["reference_body_rot"].append(np.asarray(reference.body_rot[entry])[None])
        else:
            current_pos, current_rot = states["body_pos"][-1][-1], states["body_rot"][-1][-1]
            if duration is None:
                last_entry = max(0, frames - 1 - min(int(round(min_segment_s * fps)), frames - 1))
            else:
                last_entry = frames - 2
            distances = pose_distances(current_pos, current_rot, reference)[:last_entry + 1]
            entry = int(np.argmin(distances))
            distance = float(distances[entry])
            reference = reanchor(reference, entry, current_pos[0, :2], float(heading_yaw(current_rot[0])))
            if policy.config.env.backend != backend:  # another pipeline: its own state from (q, qd)
                physics = initial_physics(policy.config, policy.character_config,
                                          jax.device_get(physics.q), jax.device_get(physics.qd))
        backend = policy.config.env.backend
        steps = frames - 1 - entry if duration is None else max(1, int(round(duration * fps)))
        if entry + steps > frames - 1:
            reference = loop_reference(reference, (entry + steps) / fps)
        run = simulate(policy.config, policy.params, policy.normaliser, reference, physics, entry, steps,
                       policy.character_config)
        physics = run.physics
        for key, value in (("qpos", run.qpos), ("body_pos", run.body_pos), ("body_rot", run.body_rot),
                           ("reference_body_pos", reference.body_pos[entry + 1:entry + steps + 1]),
                           ("reference_body_rot", reference.body_rot[entry + 1:entry + steps + 1])):
            states[key].append(np.asarray(value, np.float32))
        steps_metrics.append(run.metrics)
        summary = summarize_rollout(run.metrics, np.ones(steps, bool), fps)
        fell_at = None if summary.fell_at_s is None else step / fps + summary.fell_at_s
        segments.append(Segment(
            index=index + 1, name=name, clip_id=policy.record.clip_id, version=policy.record.version,
            status=policy.record.status, start_step=step, end_step=step + steps, entry_frame=entry,
            entry_distance_m=distance, pose_error_m=summary.pose_error_m, fell=summary.fell, fell_at_s=fell_at,
            transition_fell=bool(index > 0 and summary.fell and summary.fell_at_s <= transition_window_s + 1e-9),
            fps=fps))
        step += steps
        if summary.fell and stop_on_fall:
            not_run = tuple(names[index + 1:])
            break

    metrics = jax.tree.map(lambda *a: np.concatenate(a), *steps_metrics)
    trajectory = Trajectory(
        fps=fps, start_frame=start_frame, **{k: np.concatenate(v) for k, v in states.items()},
        pose_error_m=np.asarray(metrics.pose_error_m), global_error_m=np.asarray(metrics.global_error_m),
        fell=np.asarray(metrics.fell), metrics=summarize_rollout(metrics, np.ones(step, bool), fps),
        body_names=tuple(chain[0].reference.body_names))
    return Composition(trajectory=trajectory, segments=tuple(segments), not_run=not_run,
                       transition_window_s=transition_window_s, character=character_dict(chain[0].character_config))


# --------------------------------------------------------------------------------------------
# Transition success over pairs.

def transition_pairs(library: PolicyLibrary, names: Sequence[str], seconds: float | None = None,
                     transition_window_s: float = 1.0, progress=print) -> dict:
    """Composes every ordered pair (a, b), a != b, of `names` and measures how often the switch
    from a to b works.

    A pair whose first segment already fell is counted apart (no transition happened). A transition
    *succeeds* when the second policy does not fall within `transition_window_s` of taking over;
    `pair_success` additionally needs no fall to the end of the second segment.

    Returns a JSON-able dict with the rate, the counts and one row per pair.
    """
    policies = {name: library.load_policy(name) for name in names}
    rows = []
    pairs = list(itertools.permutations(names, 2))
    started = time.perf_counter()
    for i, (a, b) in enumerate(pairs, 1):
        composition = compose(library, [a, b], seconds, transition_window_s=transition_window_s,
                              policies=policies, stop_on_fall=True)
        first = composition.segments[0]
        second = composition.segments[1] if len(composition.segments) > 1 else None
        rows.append({
            "from": a, "to": b, "first_fell": first.fell,
            "transition_ok": second is not None and not second.transition_fell,
            "second_fell": None if second is None else second.fell,
            "entry_frame": None if second is None else second.entry_frame,
            "entry_distance_m": None if second is None else second.entry_distance_m,
            "second_pose_error_m": None if second is None else second.pose_error_m,
            "fell_at_s": None if second is None else second.fell_at_s})
        if progress is not None:
            elapsed = time.perf_counter() - started
            eta = elapsed / i * (len(pairs) - i)
            status = "first clip fell" if second is None else (
                "ok" if not second.fell else ("transition fell" if second.transition_fell else "fell later"))
            progress(f"[{i}/{len(pairs)}] {a} -> {b}: {status}"
                     + ("" if second is None else f" (entered at frame {second.entry_frame}, "
                                                  f"{second.entry_distance_m:.3f} m away)")
                     + f"  {elapsed:.0f} s, ETA {eta:.0f} s")
    attempted = [r for r in rows if not r["first_fell"]]
    ok = sum(r["transition_ok"] for r in attempted)
    whole = sum(r["transition_ok"] and not r["second_fell"] for r in attempted)
    return {
        "names": list(names), "pairs": len(rows), "first_fell": len(rows) - len(attempted),
        "transitions": len(attempted), "transition_ok": ok,
        "transition_success_rate": ok / len(attempted) if attempted else None,
        "pair_success_rate": whole / len(attempted) if attempted else None,
        "transition_window_s": transition_window_s, "seconds": seconds,
        "elapsed_s": time.perf_counter() - started, "rows": rows}


# --------------------------------------------------------------------------------------------
# CLI.

def _print_composition(composition: Composition) -> None:
    print(f"{'#':>2}  {'clip':<28} {'ver':>4}  {'entered at':<20} {'time (s)':<13} {'pose err':>9}  fell")
    for s in composition.segments:
        entered = f"frame {s.entry_frame}" + ("" if s.index == 1 else f" ({s.entry_distance_m:.3f} m)")
        fell = "no" if not s.fell else f"at {s.fell_at_s:.2f} s" + (" (transition)" if s.transition_fell else "")
        print(f"{s.index:>2}  {s.name[:28]:<28} {s.version:>4}  {entered:<20} "
              f"{s.start_s:5.2f}-{s.end_s:5.2f}   {s.pose_error_m:7.4f} m  {fell}")
    for name in composition.not_run:
        print(f"    {name[:28]:<28}       not run (the character fell before)")
    n = len(composition.segments) - 1
    print(f"{composition.trajectory.seconds:.2f} s, pose error {composition.trajectory.metrics.pose_error_m:.4f} m; "
          f"transitions without a fall within {composition.transition_window_s:g} s: "
          f"{n - composition.failed_transitions}/{n}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m factory.compose",
                                     description="Run library policies one after another in one simulation.")
    parser.add_argument("names", nargs="*", help="policy names in order (with --pairs: the set to pair; "
                                                  "default every policy that did not fail)")
    parser.add_argument("--library", "--root", dest="root", default=default_root(),
                        help="the library (default $DIFFMIMIC_LIBRARY or ~/diffmimic-library; --root is the "
                             "old spelling)")
    parser.add_argument("--out", required=True, help="composition: trajectory .npz (+ .npz.json summary); "
                                                     "--pairs: results .json")
    parser.add_argument("--seconds", type=float, nargs="+", help="segment durations (one for all, or one each); "
                                                                 "default: each clip to its end")
    parser.add_argument("--start-frame", type=int, default=0)
    parser.add_argument("--min-segment-s", type=float, default=1.0)
    parser.add_argument("--transition-window-s", type=float, default=1.0)
    parser.add_argument("--continue-after-fall", action="store_true")
    parser.add_argument("--pairs", action="store_true", help="measure transition success over every ordered pair")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from diffmimic.train import enable_compilation_cache

    try:
        library = PolicyLibrary(args.root)
        if args.pairs:
            names = args.names or [r.clip_id for r in library.query(status=("converged", "best_effort"))]
            if len(names) < 2:
                raise CompositionError("--pairs needs at least two policies")
            enable_compilation_cache()
            seconds = None if not args.seconds else args.seconds[0]
            result = transition_pairs(library, names, seconds, args.transition_window_s)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_json(out, result)
            rate = result["transition_success_rate"]
            print(f"{result['transition_ok']}/{result['transitions']} transitions without a fall within "
                  f"{args.transition_window_s:g} s ({'n/a' if rate is None else f'{rate:.0%}'}); "
                  f"{result['first_fell']} pair(s) fell before switching; wrote {out}")
            return 0
        if not args.names:
            raise CompositionError("give the policy names to compose, e.g. `walk kick walk`")
        enable_compilation_cache()
        composition = compose(library, args.names, args.seconds, start_frame=args.start_frame,
                              min_segment_s=args.min_segment_s, transition_window_s=args.transition_window_s,
                              stop_on_fall=not args.continue_after_fall)
    except LibraryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = composition.save(args.out)
    if args.json:
        print(json.dumps(composition.summary(), indent=2))
    else:
        _print_composition(composition)
        print(f"wrote {out} and {out.name}.json; view it: python -m factory.library render {out} --out "
              f"{out.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
