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
    python -m factory.compose --library LIB --transitions --out edges.json      # build the graph
    python -m factory.compose --library LIB --plan walk crouch walk --out plan.npz
    python -m factory.compose --library LIB --random-walk 60 --seed 3 --out walk.npz

Hand-over by state (the default; `--handover pose` is the nearest pose alone): the next clip is
entered at the frame whose pose, body velocities and planted feet are nearest the character's
(`entry_costs`). The transition graph (`build_transitions`, stored by
`factory.library.transitions`) holds, for every ordered pair of converged policies, simulated
hand-overs at the cheapest exits; `plan` routes through other clips where no direct one
survives, and `random_walk` plays the library along it.
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

import jax
import numpy as np
from scipy.spatial.transform import Rotation

from diffmimic import atomic
from diffmimic.compile import enable_compilation_cache
from diffmimic.geometry import heading_frame_pose, heading_yaw, rotate_z
from diffmimic.metrics import loop_reference, summarize_rollout
from diffmimic.rollout import Trajectory, initial_physics, reference_physics, simulate
from factory.library import LibraryError, Policy, PolicyLibrary, character_dict, default_root
from factory.library.transitions import Transition, TransitionGraph


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
            "title": self.title,
            "kind": "composition",
            "seconds": self.trajectory.seconds,
            "steps": self.trajectory.steps,
            "fps": self.trajectory.fps,
            "pose_error_m": self.trajectory.metrics.pose_error_m,
            "fell": self.fell,
            "fell_at_s": None if fell is None else fell.fell_at_s,
            "fell_in_segment": None if fell is None else fell.index,
            "transitions": len(self.segments) - 1,
            "failed_transitions": self.failed_transitions,
            "transition_window_s": self.transition_window_s,
            "segments": [s.to_dict() for s in self.segments],
            "not_run": list(self.not_run),
            "character": self.character,
        }

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


def pose_distances(body_pos: np.ndarray, body_rot: np.ndarray, reference) -> np.ndarray:
    """Mean body distance (m) between one pose (24, 3)/(24, 4) and every frame of `reference`,
    both root-relative and heading-aligned: (frames,)."""
    current = heading_frame_pose(body_pos, body_rot)
    frames = heading_frame_pose(reference.body_pos, reference.body_rot)
    return np.linalg.norm(frames - current[None], axis=-1).mean(-1)


# Hand-over rules (`Composer`): ``state`` weighs pose, velocity and planted feet; ``pose`` is the
# nearest pose alone (velocities ignored).
HANDOVERS = ("state", "pose")
# A body's velocity mismatch counts as the distance it would drift in this long (1 m/s: 0.1 m).
VELOCITY_WEIGHT_S = 0.1
# A foot planted in one state and not in the other costs as much as this mean body distance.
CONTACT_WEIGHT_M = 0.05
# A foot is planted when its toe is this low (its rest height on this skeleton is ~0.06 m) and
# slower than this horizontally.
PLANTED_TOE_HEIGHT_M = 0.09
PLANTED_TOE_SPEED_MPS = 0.4


def planted_feet(body_pos: np.ndarray, body_vel: np.ndarray, body_names: Sequence[str]) -> np.ndarray:
    """Whether each foot (left, right) is planted: its toe low and slow. (..., 2) bool for
    (..., 24, 3) positions and velocities."""
    toes = [list(body_names).index(n) for n in ("L_Toe", "R_Toe")]
    body_pos, body_vel = np.asarray(body_pos), np.asarray(body_vel)
    low = body_pos[..., toes, 2] < PLANTED_TOE_HEIGHT_M
    slow = np.linalg.norm(body_vel[..., toes, :2], axis=-1) < PLANTED_TOE_SPEED_MPS
    return low & slow


def entry_costs(body_pos: np.ndarray, body_rot: np.ndarray, body_vel: np.ndarray, reference) -> np.ndarray:
    """The cost (m) of entering each frame of `reference` from a state (body positions (24, 3),
    orientations (24, 4), linear velocities (24, 3), world frame): the mean body distance of
    `pose_distances`, plus the mean body velocity mismatch in the heading frame times
    `VELOCITY_WEIGHT_S`, plus `CONTACT_WEIGHT_M` per foot planted in one and not the other.
    Returns (frames,)."""
    pose = pose_distances(body_pos, body_rot, reference)
    here = rotate_z(np.asarray(body_vel, np.float64), -heading_yaw(np.asarray(body_rot)[0]))
    yaws = heading_yaw(np.asarray(reference.body_rot)[:, 0])
    there = rotate_z(np.asarray(reference.body_vel, np.float64), -yaws[:, None])
    velocity = np.linalg.norm(there - here[None], axis=-1).mean(-1)
    names = reference.body_names
    contact = (
        planted_feet(reference.body_pos, reference.body_vel, names) != planted_feet(body_pos, body_vel, names)[None]
    ).sum(-1)
    return pose + VELOCITY_WEIGHT_S * velocity + CONTACT_WEIGHT_M * contact


def reanchor(reference, frame: int, root_xy: np.ndarray, yaw: float):
    """`reference` rotated about the vertical and shifted so that at `frame` its root is at
    `root_xy` with heading `yaw` (heights unchanged). Returns a new `Reference`."""
    delta = float(yaw - heading_yaw(reference.body_rot[frame, 0]))
    pivot = np.asarray(reference.body_pos[frame, 0, :2], np.float64)
    shift = np.asarray(root_xy, np.float64)

    def move(points):  # (..., 3) positions
        points = np.asarray(points, np.float64).copy()
        points[..., :2] -= pivot
        points = rotate_z(points, np.float64(delta))
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
    qvel[:, :3] = rotate_z(qvel[:, :3], np.float64(delta))  # root linear velocity is in the world frame
    # (root angular velocity is in the body frame: unchanged)
    return dataclasses.replace(
        reference,
        qpos=qpos,
        qvel=qvel,
        body_pos=move(reference.body_pos),
        body_rot=turn_quats(reference.body_rot),
        body_vel=rotate_z(np.asarray(reference.body_vel, np.float64), np.float64(delta)),
        body_ang=rotate_z(np.asarray(reference.body_ang, np.float64), np.float64(delta)),
    )


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
            raise CompositionError(
                f"{policy.record.ref} and {first.record.ref} were trained on different "
                "characters; they cannot share one simulation"
            )
        if (
            policy.config.env.control_hz != first.config.env.control_hz
            or policy.config.env.substeps != first.config.env.substeps
        ):
            raise CompositionError(
                f"{policy.record.ref} and {first.record.ref} run at different control or simulation rates"
            )


class Composer:
    """Builds a composition one segment at a time (`compose` runs a list; a random walk on the
    transition graph picks each next clip after seeing where the last one was entered).

    The first segment starts at its clip's reference state, exactly as the library's rollout and
    training's evaluation start; each later one takes over the current simulated state, entering
    its clip at the frame `handover` picks (`HANDOVERS`) unless given, with its reference
    re-anchored to the character's position and heading.
    """

    def __init__(self, transition_window_s: float = 1.0, handover: str = "state", min_segment_s: float = 1.0):
        if handover not in HANDOVERS:
            raise CompositionError(f"handover must be one of {HANDOVERS}, got {handover!r}")
        self.transition_window_s, self.handover, self.min_segment_s = transition_window_s, handover, min_segment_s
        self.states: dict[str, list] = {
            k: [] for k in ("qpos", "body_pos", "body_rot", "reference_body_pos", "reference_body_rot")
        }
        self.metrics: list = []
        self.segments: list[Segment] = []
        self.policies: list[Policy] = []
        self.physics = None
        self.step = 0

    @property
    def fell(self) -> bool:
        return any(s.fell for s in self.segments)

    @property
    def seconds(self) -> float:
        return self.step / self.segments[0].fps if self.segments else 0.0

    def add(
        self,
        name: str,
        policy: Policy,
        *,
        entry: int | None = None,
        exit: int | None = None,
        seconds: float | None = None,
    ) -> Segment:
        """Runs `policy` next and returns its `Segment`.

        entry: the clip frame to enter at (the first segment: its start frame, default 0; later
          ones: default chosen by the hand-over rule). exit: the clip frame to hand over at (the
          segment runs entry .. exit). seconds: instead, run this long (looping the clip past its
          end). Neither: to the clip's end.
        """
        if self.policies:
            _check_compatible([self.policies[0], policy])
        reference = policy.reference
        frames, fps = reference.num_frames, float(reference.fps)
        if frames < 2:
            raise CompositionError(f"{policy.record.ref}: its clip has {frames} frame(s)")
        if seconds is not None and seconds <= 0:
            raise CompositionError(f"segment {len(self.segments) + 1} ({name}): seconds must be > 0, got {seconds}")
        if exit is not None and not 0 < exit <= frames - 1:
            raise CompositionError(f"{policy.record.ref}: exit frame {exit} is outside frames 1..{frames - 1}")
        if not self.segments:
            entry = 0 if entry is None else entry
            if not 0 <= entry < frames - 1:
                raise CompositionError(f"start_frame must be in [0, {frames - 2}] for {policy.record.ref}")
            distance = 0.0
            self.physics = reference_physics(policy.config, policy.character_config, reference, entry)
            x0 = jax.device_get(self.physics.x)
            for key, value in (
                ("qpos", self.physics.q),
                ("body_pos", x0.pos),
                ("body_rot", x0.rot),
                ("reference_body_pos", reference.body_pos[entry]),
                ("reference_body_rot", reference.body_rot[entry]),
            ):
                self.states[key].append(np.asarray(jax.device_get(value), np.float32)[None])
        else:
            if exit is not None:
                last_entry = exit - 1
            elif seconds is None:
                last_entry = max(0, frames - 1 - min(int(round(self.min_segment_s * fps)), frames - 1))
            else:
                last_entry = frames - 2
            current_pos, current_rot = self.states["body_pos"][-1][-1], self.states["body_rot"][-1][-1]
            if entry is None:
                entry = self.choose_entry(policy, last_entry)
            elif not 0 <= entry <= last_entry:
                raise CompositionError(f"{policy.record.ref}: entry frame {entry} is outside 0..{last_entry}")
            distance = float(pose_distances(current_pos, current_rot, reference)[entry])
            reference = reanchor(reference, entry, current_pos[0, :2], float(heading_yaw(current_rot[0])))
            if policy.config.env.backend != self.policies[-1].config.env.backend:  # its own state from (q, qd)
                self.physics = initial_physics(
                    policy.config,
                    policy.character_config,
                    jax.device_get(self.physics.q),
                    jax.device_get(self.physics.qd),
                )
        if exit is not None:
            if exit <= entry:
                raise CompositionError(f"{policy.record.ref}: exit frame {exit} is not after entry frame {entry}")
            steps = exit - entry
        else:
            steps = frames - 1 - entry if seconds is None else max(1, int(round(seconds * fps)))
        if entry + steps > frames - 1:
            reference = loop_reference(reference, (entry + steps) / fps)
        run = simulate(
            policy.config,
            policy.params,
            policy.normaliser,
            reference,
            self.physics,
            entry,
            steps,
            policy.character_config,
        )
        self.physics = run.physics
        for key, value in (
            ("qpos", run.qpos),
            ("body_pos", run.body_pos),
            ("body_rot", run.body_rot),
            ("reference_body_pos", reference.body_pos[entry + 1 : entry + steps + 1]),
            ("reference_body_rot", reference.body_rot[entry + 1 : entry + steps + 1]),
        ):
            self.states[key].append(np.asarray(value, np.float32))
        self.metrics.append(run.metrics)
        summary = summarize_rollout(run.metrics, np.ones(steps, bool), fps)
        fell_at = None if summary.fell_at_s is None else self.step / fps + summary.fell_at_s
        index = len(self.segments)
        segment = Segment(
            index=index + 1,
            name=name,
            clip_id=policy.record.clip_id,
            version=policy.record.version,
            status=policy.record.status,
            start_step=self.step,
            end_step=self.step + steps,
            entry_frame=entry,
            entry_distance_m=distance,
            pose_error_m=summary.pose_error_m,
            fell=summary.fell,
            fell_at_s=fell_at,
            transition_fell=bool(index > 0 and summary.fell and summary.fell_at_s <= self.transition_window_s + 1e-9),
            fps=fps,
        )
        self.segments.append(segment)
        self.policies.append(policy)
        self.step += steps
        return segment

    def choose_entry(self, policy: Policy, last_entry: int) -> int:
        """The frame (0..`last_entry`) at which `policy`'s clip is entered from the current
        simulated state, by the hand-over rule."""
        current_pos, current_rot = self.states["body_pos"][-1][-1], self.states["body_rot"][-1][-1]
        if self.handover == "state":
            costs = entry_costs(
                current_pos, current_rot, np.asarray(jax.device_get(self.physics.xd.vel)), policy.reference
            )
        else:
            costs = pose_distances(current_pos, current_rot, policy.reference)
        return int(np.argmin(costs[: last_entry + 1]))

    def composition(self, not_run: Sequence[str] = ()) -> Composition:
        """The composition of the segments added so far."""
        if not self.segments:
            raise CompositionError("nothing composed yet")
        fps = self.segments[0].fps
        metrics = jax.tree.map(lambda *a: np.concatenate(a), *self.metrics)
        trajectory = Trajectory(
            fps=fps,
            start_frame=self.segments[0].entry_frame,
            **{k: np.concatenate(v) for k, v in self.states.items()},
            pose_error_m=np.asarray(metrics.pose_error_m),
            global_error_m=np.asarray(metrics.global_error_m),
            fell=np.asarray(metrics.fell),
            metrics=summarize_rollout(metrics, np.ones(self.step, bool), fps),
            body_names=tuple(self.policies[0].reference.body_names),
        )
        return Composition(
            trajectory=trajectory,
            segments=tuple(self.segments),
            not_run=tuple(not_run),
            transition_window_s=self.transition_window_s,
            character=character_dict(self.policies[0].character_config),
        )


def _load(library: PolicyLibrary, loaded: dict, name: str, version: int | None = None) -> Policy:
    key = name if version is None else f"{name}@{version}"
    if key not in loaded:
        loaded[key] = library.load_policy(name, version)
    return loaded[key]


def compose(
    library: PolicyLibrary,
    names: Sequence[str],
    seconds: float | Sequence[float | None] | None = None,
    *,
    start_frame: int = 0,
    min_segment_s: float = 1.0,
    transition_window_s: float = 1.0,
    stop_on_fall: bool = True,
    versions: Sequence[int | None] | None = None,
    policies: dict[str, Policy] | None = None,
    handover: str = "state",
    entries: Sequence[int | None] | None = None,
    exits: Sequence[int | None] | None = None,
) -> Composition:
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
      handover: how a segment's entry frame is chosen (`HANDOVERS`): ``state`` (pose, velocity
        and planted feet, `entry_costs`) or ``pose`` (the nearest pose alone).
      entries, exits: per segment, an entry frame (None: chosen) and an exit frame (None: by
        `seconds` or the clip's end), e.g. a transition graph's edges.

    Returns:
      A `Composition`.
    """
    if not names:
        raise CompositionError("nothing to compose: give at least one policy name")
    durations = _segment_seconds(seconds, len(names))
    versions = list(versions) if versions is not None else [None] * len(names)
    entries = list(entries) if entries is not None else [None] * len(names)
    exits = list(exits) if exits is not None else [None] * len(names)
    if entries[0] is None:
        entries[0] = start_frame
    loaded: dict = dict(policies or {})
    chain = [_load(library, loaded, name, version) for name, version in zip(names, versions)]
    _check_compatible(chain)
    composer = Composer(transition_window_s, handover, min_segment_s)
    not_run: tuple[str, ...] = ()
    for index, (name, policy) in enumerate(zip(names, chain)):
        segment = composer.add(name, policy, entry=entries[index], exit=exits[index], seconds=durations[index])
        if segment.fell and stop_on_fall:
            not_run = tuple(names[index + 1 :])
            break
    return composer.composition(not_run)


# --------------------------------------------------------------------------------------------
# Transition success over pairs.


def transition_pairs(
    library: PolicyLibrary,
    names: Sequence[str],
    seconds: float | None = None,
    transition_window_s: float = 1.0,
    progress=print,
    handover: str = "state",
) -> dict:
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
        composition = compose(
            library,
            [a, b],
            seconds,
            transition_window_s=transition_window_s,
            policies=policies,
            stop_on_fall=True,
            handover=handover,
        )
        first = composition.segments[0]
        second = composition.segments[1] if len(composition.segments) > 1 else None
        rows.append(
            {
                "from": a,
                "to": b,
                "first_fell": first.fell,
                "transition_ok": second is not None and not second.transition_fell,
                "second_fell": None if second is None else second.fell,
                "entry_frame": None if second is None else second.entry_frame,
                "entry_distance_m": None if second is None else second.entry_distance_m,
                "second_pose_error_m": None if second is None else second.pose_error_m,
                "fell_at_s": None if second is None else second.fell_at_s,
            }
        )
        if progress is not None:
            elapsed = time.perf_counter() - started
            eta = elapsed / i * (len(pairs) - i)
            status = (
                "first clip fell"
                if second is None
                else ("ok" if not second.fell else ("transition fell" if second.transition_fell else "fell later"))
            )
            progress(
                f"[{i}/{len(pairs)}] {a} -> {b}: {status}"
                + (
                    ""
                    if second is None
                    else f" (entered at frame {second.entry_frame}, {second.entry_distance_m:.3f} m away)"
                )
                + f"  {elapsed:.0f} s, ETA {eta:.0f} s"
            )
    attempted = [r for r in rows if not r["first_fell"]]
    ok = sum(r["transition_ok"] for r in attempted)
    whole = sum(r["transition_ok"] and not r["second_fell"] for r in attempted)
    return {
        "names": list(names),
        "pairs": len(rows),
        "first_fell": len(rows) - len(attempted),
        "transitions": len(attempted),
        "transition_ok": ok,
        "transition_success_rate": ok / len(attempted) if attempted else None,
        "pair_success_rate": whole / len(attempted) if attempted else None,
        "transition_window_s": transition_window_s,
        "seconds": seconds,
        "handover": handover,
        "elapsed_s": time.perf_counter() - started,
        "rows": rows,
    }


# --------------------------------------------------------------------------------------------
# The transition graph (`factory.library.transitions`): simulated hand-overs between policies.


def exit_candidates(
    a: Policy, b: Policy, count: int = 3, lead_s: float = 1.0, min_segment_s: float = 1.0, spacing_s: float = 0.5
) -> list[tuple[int, int, float]]:
    """Where `a` could hand over to `b`: (exit frame of a, entry frame of b, cost in m), the
    `count` cheapest by `entry_costs` between a's reference state at the exit and b's frames,
    exits at least `spacing_s` apart, each with `lead_s` of a's clip before it (a run-up) and
    entries leaving `min_segment_s` of b's clip."""
    fps = float(a.reference.fps)
    ra, rb = a.reference, b.reference
    lead = min(int(round(lead_s * fps)), ra.num_frames - 2)
    last_entry = max(0, rb.num_frames - 1 - min(int(round(min_segment_s * fps)), rb.num_frames - 1))
    options = []
    for exit in range(max(lead, 1), ra.num_frames):
        costs = entry_costs(ra.body_pos[exit], ra.body_rot[exit], ra.body_vel[exit], rb)[: last_entry + 1]
        entry = int(np.argmin(costs))
        options.append((float(costs[entry]), exit, entry))
    chosen: list[tuple[int, int, float]] = []
    spacing = max(1, int(round(spacing_s * fps)))
    for cost, exit, entry in sorted(options):
        if all(abs(exit - other) >= spacing for other, _, _ in chosen):
            chosen.append((exit, entry, cost))
        if len(chosen) == count:
            break
    return chosen


def simulate_transition(
    a: Policy,
    b: Policy,
    exit: int,
    cost_m: float = 0.0,
    window_s: float = 2.0,
    lead_s: float = 1.0,
    handover: str = "state",
):
    """Simulates `a` from its reference state `lead_s` before `exit` to `exit`, then hands over
    to `b` (entry by the hand-over rule) for `window_s` (or to b's clip end). Returns a
    `Transition` (survived: no fall in either part)."""
    fps = float(a.reference.fps)
    composer = Composer(transition_window_s=window_s, handover=handover)
    run_up = composer.add(a.clip_id, a, entry=max(0, exit - int(round(lead_s * fps))), exit=exit)
    entry, fell_at = None, None
    if run_up.fell:
        fell_at = run_up.fell_at_s - run_up.end_s
    else:
        frames = b.reference.num_frames
        entry = composer.choose_entry(b, frames - 2)
        after = composer.add(
            b.clip_id, b, entry=entry, exit=min(entry + max(1, int(round(window_s * fps))), frames - 1)
        )
        if after.fell:
            fell_at = after.fell_at_s - after.start_s
    return Transition(
        from_clip=a.clip_id,
        from_version=a.record.version,
        to_clip=b.clip_id,
        to_version=b.record.version,
        exit_frame=int(exit),
        entry_frame=int(-1 if entry is None else entry),
        cost_m=float(cost_m),
        survived=fell_at is None,
        fell_at_s=fell_at,
        window_s=window_s,
    )


def graph_policies(library: PolicyLibrary, statuses: Sequence[str] = ("converged",)) -> dict[str, Policy]:
    """The newest policy of every clip with one of `statuses`, by clip id (the graph's nodes)."""
    return {r.clip_id: library.load_policy(r.clip_id, r.version) for r in library.query(status=tuple(statuses))}


def build_transitions(
    library: PolicyLibrary,
    policies: dict[str, Policy] | None = None,
    candidates: int = 3,
    window_s: float = 2.0,
    progress=print,
):
    """Simulates the hand-overs of every ordered pair of `policies` (default: the converged
    ones) that the library's transition graph does not hold yet for these versions (so a run
    that added policies simulates only the pairs they are in), up to `candidates` exits per pair,
    stopping at the first that survives. Returns the updated `TransitionGraph`."""
    policies = graph_policies(library) if policies is None else policies
    graph = _graph(library, policies)
    done = graph.simulated_pairs()
    todo = [
        (a, b)
        for a, b in itertools.permutations(sorted(policies), 2)
        if (a, policies[a].record.version, b, policies[b].record.version) not in done
    ]
    started = time.perf_counter()
    for i, (a, b) in enumerate(todo, 1):
        rows = []
        for exit, _, cost in exit_candidates(policies[a], policies[b], count=candidates):
            rows.append(simulate_transition(policies[a], policies[b], exit, cost, window_s=window_s))
            if rows[-1].survived:
                break
        graph.put(rows)
        if progress is not None:
            elapsed = time.perf_counter() - started
            ok = next((t for t in rows if t.survived), None)
            progress(
                f"[{i}/{len(todo)}] {policies[a].record.name} -> {policies[b].record.name}: "
                + (
                    f"ok at exit {ok.exit_frame} -> entry {ok.entry_frame}"
                    if ok
                    else f"no survivor in {len(rows)} candidate(s)"
                )
                + f"  {elapsed:.0f} s, ETA {elapsed / i * (len(todo) - i):.0f} s"
            )
    return graph


def _entered(composer: Composer, policy: Policy, min_segment_s: float) -> int:
    """The frame the next segment enters `policy`'s clip at: 0 first, then by the hand-over
    rule, leaving `min_segment_s` of the clip."""
    if not composer.segments:
        return 0
    frames, fps = policy.reference.num_frames, float(policy.reference.fps)
    return composer.choose_entry(policy, max(0, frames - 1 - min(int(round(min_segment_s * fps)), frames - 1)))


def _exits(
    graph, policies: dict[str, Policy], clip: str, entered: int, min_segment_s: float, goal: str | None = None
) -> list:
    """The surviving edges out of `clip` (toward `goal` only, when given) whose exit leaves at
    least `min_segment_s` (one frame at least) after `entered`."""
    fps = float(policies[clip].reference.fps)
    earliest = entered + max(1, int(round(min_segment_s * fps)))
    return [
        t
        for t in graph.edges(from_clip=clip, survived_only=True)
        if t.to_clip in policies and t.exit_frame >= earliest and (goal is None or t.to_clip == goal)
    ]


def _graph(library: PolicyLibrary, policies: dict[str, Policy]):
    return TransitionGraph(library.root, {c: p.record.version for c, p in policies.items()})


def random_walk(
    library: PolicyLibrary,
    seconds: float = 60.0,
    seed: int = 0,
    graph=None,
    policies: dict[str, Policy] | None = None,
    min_segment_s: float = 1.0,
    transition_window_s: float = 1.0,
):
    """Plays the library for `seconds` along the transition graph: from a random clip's first
    frame, each clip runs to the exit of a random surviving edge (one that leaves at least
    `min_segment_s` of it after where it was entered) and hands over by state, until `seconds`
    are played, the character falls, or no edge leads on (the last clip then plays to its end).
    Returns (`Composition`, outcome: ``completed``, ``fell`` or ``dead_end``)."""
    policies = graph_policies(library) if policies is None else policies
    graph = graph or _graph(library, policies)
    starts = sorted({t.from_clip for t in graph.edges(survived_only=True)} & set(policies))
    if not starts:
        raise CompositionError(
            f"{library.root}: the transition graph has no surviving edge between current "
            "policies; build it with `python -m factory.compose --library LIB --transitions`"
        )
    rng = np.random.default_rng(seed)
    composer = Composer(transition_window_s=transition_window_s, handover="state", min_segment_s=min_segment_s)
    clip = starts[int(rng.integers(len(starts)))]
    while True:
        policy = policies[clip]
        fps, frames = float(policy.reference.fps), policy.reference.num_frames
        entered = _entered(composer, policy, min_segment_s)
        edges = _exits(graph, policies, clip, entered, min_segment_s)
        remaining = seconds - composer.seconds
        edge = edges[int(rng.integers(len(edges)))] if edges else None
        end = edge.exit_frame if edge is not None else frames - 1
        if (end - entered) / fps >= remaining or edge is None:  # the walk ends inside this clip
            composer.add(clip, policy, entry=entered, exit=min(end, entered + int(np.ceil(remaining * fps))))
            break
        if composer.add(clip, policy, entry=entered, exit=end).fell:
            break
        clip = edge.to_clip
    if composer.fell:
        outcome = "fell"
    else:
        outcome = "completed" if composer.seconds >= seconds - 0.5 / fps else "dead_end"
    return composer.composition(), outcome


def plan(library: PolicyLibrary, names: Sequence[str], graph=None, policies: dict[str, Policy] | None = None):
    """The clips to play to visit `names` in order: a direct hand-over where the graph holds a
    surviving one, else the fewest surviving hand-overs through other clips. Returns the clip
    ids in order (intermediates included); raises `CompositionError` when no route exists."""
    policies = graph_policies(library, ("converged", "best_effort")) if policies is None else policies
    ids = [library.get(name).clip_id for name in names]
    graph = graph or _graph(library, policies)
    route = [ids[0]]
    for a, b in zip(ids, ids[1:]):
        hops = graph.route(a, b)
        if hops is None:
            raise CompositionError(
                f"no surviving route from {a} to {b} in the transition graph "
                f"({graph.path}); `python -m factory.library transitions {a}` lists its edges"
            )
        route += [t.to_clip for t in hops]
    return route


def compose_route(
    library: PolicyLibrary,
    route: Sequence[str],
    graph=None,
    policies: dict[str, Policy] | None = None,
    transition_window_s: float = 1.0,
    min_segment_s: float = 0.5,
) -> Composition:
    """Composes `route` (clip ids, e.g. from `plan`) handing over at the graph's surviving exits:
    each clip runs from where it was entered (by state) to the cheapest surviving exit toward the
    next that leaves it at least `min_segment_s`; the last clip runs to its end. Stops at a fall."""
    policies = graph_policies(library, ("converged", "best_effort")) if policies is None else policies
    graph = graph or _graph(library, policies)
    composer = Composer(transition_window_s=transition_window_s, handover="state", min_segment_s=min_segment_s)
    for index, (clip, following) in enumerate(zip(route, list(route[1:]) + [None])):
        policy = policies[clip]
        entered = _entered(composer, policy, min_segment_s)
        exit = None
        if following is not None:
            edges = _exits(graph, policies, clip, entered, min_segment_s, goal=following)
            if not edges:
                raise CompositionError(
                    f"{clip} has no surviving exit to {following} after frame {entered}, where it is entered"
                )
            exit = min(edges, key=lambda t: t.cost_m).exit_frame
        if composer.add(clip, policy, entry=entered, exit=exit).fell:
            return composer.composition(not_run=tuple(route[index + 1 :]))
    return composer.composition()


# --------------------------------------------------------------------------------------------
# CLI.


def _print_composition(composition: Composition) -> None:
    print(f"{'#':>2}  {'clip':<28} {'ver':>4}  {'entered at':<20} {'time (s)':<13} {'pose err':>9}  fell")
    for s in composition.segments:
        entered = f"frame {s.entry_frame}" + ("" if s.index == 1 else f" ({s.entry_distance_m:.3f} m)")
        fell = "no" if not s.fell else f"at {s.fell_at_s:.2f} s" + (" (transition)" if s.transition_fell else "")
        print(
            f"{s.index:>2}  {s.name[:28]:<28} {s.version:>4}  {entered:<20} "
            f"{s.start_s:5.2f}-{s.end_s:5.2f}   {s.pose_error_m:7.4f} m  {fell}"
        )
    for name in composition.not_run:
        print(f"    {name[:28]:<28}       not run (the character fell before)")
    n = len(composition.segments) - 1
    print(
        f"{composition.trajectory.seconds:.2f} s, pose error {composition.trajectory.metrics.pose_error_m:.4f} m; "
        f"transitions without a fall within {composition.transition_window_s:g} s: "
        f"{n - composition.failed_transitions}/{n}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m factory.compose", description="Run library policies one after another in one simulation."
    )
    parser.add_argument(
        "names",
        nargs="*",
        help="policy names in order (with --pairs: the set to pair; default every policy that did not fail)",
    )
    parser.add_argument(
        "--library",
        "--root",
        dest="root",
        default=default_root(),
        help="the library (default $DIFFMIMIC_LIBRARY or ~/diffmimic-library; --root is the old spelling)",
    )
    parser.add_argument(
        "--out", required=True, help="composition: trajectory .npz (+ .npz.json summary); --pairs: results .json"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        nargs="+",
        help="segment durations (one for all, or one each); default: each clip to its end",
    )
    parser.add_argument("--start-frame", type=int, default=0)
    parser.add_argument("--min-segment-s", type=float, default=1.0)
    parser.add_argument("--transition-window-s", type=float, default=1.0)
    parser.add_argument("--continue-after-fall", action="store_true")
    parser.add_argument(
        "--handover",
        choices=HANDOVERS,
        default="state",
        help="how the next clip's entry frame is chosen: state (pose, velocity and planted feet; "
        "the default) or pose (the nearest pose alone)",
    )
    parser.add_argument("--pairs", action="store_true", help="measure transition success over every ordered pair")
    parser.add_argument(
        "--transitions",
        action="store_true",
        help="simulate the hand-overs between converged policies that the library's transition "
        "graph lacks (LIB/transitions.sqlite; `python -m factory.library transitions NAME` "
        "reads it)",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="visit NAMES in order along the transition graph, through other clips where no direct hand-over survives",
    )
    parser.add_argument(
        "--random-walk",
        type=float,
        metavar="SECONDS",
        help="play the library for SECONDS along random surviving edges of the transition graph",
    )
    parser.add_argument("--seed", type=int, default=0, help="--random-walk's seed")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    outcome = None
    try:
        library = PolicyLibrary(args.root)
        if args.pairs:
            names = args.names or [r.clip_id for r in library.query(status=("converged", "best_effort"))]
            if len(names) < 2:
                raise CompositionError("--pairs needs at least two policies")
            enable_compilation_cache()
            seconds = None if not args.seconds else args.seconds[0]
            result = transition_pairs(library, names, seconds, args.transition_window_s, handover=args.handover)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_json(out, result)
            rate = result["transition_success_rate"]
            print(
                f"{result['transition_ok']}/{result['transitions']} transitions without a fall within "
                f"{args.transition_window_s:g} s ({'n/a' if rate is None else f'{rate:.0%}'}); "
                f"{result['first_fell']} pair(s) fell before switching; wrote {out}"
            )
            return 0
        if args.transitions:
            enable_compilation_cache()
            graph = build_transitions(library)
            best = graph.best()
            ok = sum(t.survived for t in best.values())
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_json(
                out, {"pairs": len(best), "surviving_pairs": ok, "edges": [t.to_dict() for t in best.values()]}
            )
            print(
                f"{ok}/{len(best)} ordered pairs hand over without a fall; graph in {graph.path}, best edges in {out}"
            )
            return 0
        if args.random_walk is not None:
            enable_compilation_cache()
            composition, outcome = random_walk(
                library, args.random_walk, seed=args.seed, transition_window_s=args.transition_window_s
            )
        elif args.plan:
            if not args.names:
                raise CompositionError("--plan needs the clips to visit, e.g. `--plan walk crouch walk`")
            enable_compilation_cache()
            route = plan(library, args.names)
            print("route: " + " > ".join(library.get(c).name for c in route))
            composition = compose_route(library, route, transition_window_s=args.transition_window_s)
        elif not args.names:
            raise CompositionError("give the policy names to compose, e.g. `walk kick walk`")
        else:
            enable_compilation_cache()
            composition = compose(
                library,
                args.names,
                args.seconds,
                start_frame=args.start_frame,
                min_segment_s=args.min_segment_s,
                transition_window_s=args.transition_window_s,
                stop_on_fall=not args.continue_after_fall,
                handover=args.handover,
            )
    except LibraryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = composition.save(args.out)
    if args.json:
        print(json.dumps(composition.summary(), indent=2))
    else:
        _print_composition(composition)
        if outcome is not None:
            print(f"random walk: {outcome} ({composition.trajectory.seconds:.1f} of {args.random_walk:g} s)")
        print(
            f"wrote {out} and {out.name}.json; view it: python -m factory.library render {out} --out "
            f"{out.with_suffix('.html')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
