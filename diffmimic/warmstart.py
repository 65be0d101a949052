"""Warm starts from similar clips: a motion signature, a distance, and a pool of donor policies.

A policy that tracks one walk already knows most of what another walk needs (balance, stepping,
where the targets in its observation are), so a clip's training can start from the converged
policy of the most similar clip instead of from random weights. Similarity is measured on what
the policy sees and must reproduce, independent of where the clip is and which way it faces:

- the mean and spread over time of each body's position relative to the pelvis, in the pelvis's
  heading frame (the pose distribution: a crouch, a walk and a stand differ here);
- the mean and spread of the pelvis height and of the pelvis's velocity in its heading frame
  (forward, sideways, up) and of its yaw rate (walking forward, backward, sideways, turning).

Each entry is in metres or metres per second (yaw rate in radians per second scaled by 0.5 m,
a stride's half-width), and the distance is the root mean square of the entry differences, so
it reads as "a typical body is this many metres (per second) off". Pure NumPy.

A donor must be near on both counts: the whole signature (`MAX_DONOR_DISTANCE_M`) and its root
motion alone (`MAX_DONOR_ROOT_DISTANCE_M`: the last `ROOT_ENTRIES` entries). The pose entries
outnumber the root's 144 to 10, so in the whole signature a walk forward and one backward can
fall within the limit (0.11 on the dev set); as a donor, a forward walk that turns did not
start a backward walk ahead of random weights (README: Training on real clips).
"""

from __future__ import annotations

import numpy as np

from diffmimic.geometry import heading_yaw, rotate_z

# Scale of the yaw rate (rad/s) into the signature's metres per second.
YAW_RATE_SCALE_M = 0.5
# Donors farther than this (RMS metres) start nothing: a random initialisation is as good.
MAX_DONOR_DISTANCE_M = 0.15
# The root motion's part of the signature (pelvis height, velocity in the heading frame, yaw
# rate: mean and spread), and the farthest a donor's may be (RMS metres per second). On the dev
# set, forward walks with different turns are 0.04-0.07 apart, stand-to-walk and a turning walk
# 0.11, a forward and a backward walk 0.31-0.45 (B14 and B6: 0.42, at 0.11 over the whole
# signature), a side step and any walk 0.27 or more.
ROOT_ENTRIES = 10
MAX_DONOR_ROOT_DISTANCE_M = 0.2


def motion_signature(body_pos: np.ndarray, body_rot: np.ndarray, fps: float) -> np.ndarray:
    """The signature of a motion from its body positions (T, B, 3) and orientations (T, B, 4,
    wxyz; body 0 the pelvis) at `fps`: a vector (B * 6 + 14,) (see the module docstring)."""
    body_pos = np.asarray(body_pos, np.float64)
    yaw = np.unwrap(heading_yaw(np.asarray(body_rot, np.float64)[:, 0]))

    def to_heading(v):  # (T, ..., 3) world -> the pelvis heading frame of each frame
        return rotate_z(v, -yaw.reshape((-1,) + (1,) * (v.ndim - 2)))

    relative = to_heading(body_pos - body_pos[:, :1])
    root_vel = to_heading(np.gradient(body_pos[:, 0], axis=0) * fps)
    yaw_rate = np.gradient(yaw) * fps * YAW_RATE_SCALE_M
    root = np.concatenate([body_pos[:, 0, 2:3], root_vel, yaw_rate[:, None]], -1)
    return np.concatenate([relative.mean(0).ravel(), relative.std(0).ravel(), root.mean(0), root.std(0)])


def reference_signature(reference) -> np.ndarray:
    """`motion_signature` of a `diffmimic.mocap.retarget.Reference`."""
    return motion_signature(reference.body_pos, reference.body_rot, reference.fps)


def signature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Root mean square difference of two signatures (metres, metres per second)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"signatures of different shapes: {a.shape} vs {b.shape}")
    return float(np.sqrt(np.mean((a - b) ** 2)))


def root_motion_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Root mean square difference of the root-motion entries of two signatures (m/s, m)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    signature_distance(a, b)  # the shape check
    return float(np.sqrt(np.mean((a[-ROOT_ENTRIES:] - b[-ROOT_ENTRIES:]) ** 2)))


def nearest_donor(
    signature: np.ndarray,
    donors,
    max_distance_m: float = MAX_DONOR_DISTANCE_M,
    max_root_distance_m: float = MAX_DONOR_ROOT_DISTANCE_M,
):
    """The donor nearest to `signature` among `donors` (each a mapping with a ``signature``)
    whose root motion is within `max_root_distance_m`, with its distance: (donor, distance), or
    (None, distance to the nearest such donor) when none is within `max_distance_m` (or
    (None, inf) when none has root motion near enough)."""
    best, best_distance = None, float("inf")
    for donor in donors:
        if root_motion_distance(signature, donor["signature"]) > max_root_distance_m:
            continue
        distance = signature_distance(signature, donor["signature"])
        if distance < best_distance:
            best, best_distance = donor, distance
    if best is None or best_distance > max_distance_m:
        return None, best_distance
    return best, best_distance


def prune_pool(signatures: list[np.ndarray], capacity: int) -> list[int]:
    """Indices of the donors to keep when a pool of `signatures` must shrink to `capacity`:
    repeatedly drops one of the closest pair (the later one), so the kept donors spread over
    the kinds of motion seen rather than crowd in one."""
    keep = list(range(len(signatures)))
    if len(keep) <= capacity:
        return keep
    points = np.stack([np.asarray(s, np.float64) for s in signatures])
    distances = np.sqrt(np.mean((points[:, None] - points[None]) ** 2, -1))
    np.fill_diagonal(distances, np.inf)
    while len(keep) > capacity:
        sub = distances[np.ix_(keep, keep)]
        i, j = np.unravel_index(np.argmin(sub), sub.shape)
        keep.pop(max(i, j))
    return keep
