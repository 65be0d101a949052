"""`Motion`: one mocap clip as SMPL joint rotations plus a root trajectory, Z-up world."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from diffmimic.character.skeleton import NUM_JOINTS


class MocapError(ValueError):
    """A mocap file could not be read. The message names the file and the problem.

    `transient`: the operating system failed the read (an OSError: a network file system's
    hiccup, a timeout, a device error), not the file's content: worth retrying, never a verdict
    on the data to cache.
    """

    def __init__(self, path: str | os.PathLike, problem: str, transient: bool = False):
        self.path = str(path)
        self.problem = problem
        self.transient = bool(transient)
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # keeps `transient` across pickling (Ray, process pools)
        return (type(self), (self.path, self.problem, self.transient))


def retry_transient(read, *args, attempts: int = 4, first_delay_s: float = 0.5, **kwargs):
    """`read(*args, **kwargs)`, retried with exponential backoff (0.5, 1, 2 s) while it raises
    a transient `MocapError`; the last error is raised when every attempt failed."""
    for attempt in range(attempts):
        try:
            return read(*args, **kwargs)
        except MocapError as err:
            if not err.transient or attempt == attempts - 1:
                raise
            time.sleep(first_delay_s * 2**attempt)


@dataclasses.dataclass(frozen=True)
class Motion:
    """A mocap clip on the SMPL skeleton.

    Attributes:
      rotations: (T, 24, 3) SMPL axis-angle joint rotations in SMPL joint order. Joint 0 is the
        global root orientation: it maps the SMPL body frame (Y-up, facing +z) into the Z-up
        world. The others are local (relative to the parent joint), as in SMPL pose vectors.
      root_position: (T, 3) world position of the pelvis joint in metres, Z-up world.
      fps: frames per second of the source.
      source: path of the file the clip came from.
      format: reader name: ``amass_smplh``, ``amass_smplx``, ``aistpp``, ``cmu``.
      betas: SMPL shape coefficients when the source gives them, else None.
      gender: ``neutral``, ``male`` or ``female`` when the source says so.
    """

    rotations: np.ndarray
    root_position: np.ndarray
    fps: float
    source: str
    format: str
    betas: np.ndarray | None = None
    gender: str = "neutral"

    def __post_init__(self):
        rotations = np.asarray(self.rotations, dtype=np.float64)
        root = np.asarray(self.root_position, dtype=np.float64)
        if rotations.ndim != 3 or rotations.shape[1:] != (NUM_JOINTS, 3):
            raise MocapError(self.source, f"rotations must have shape (T, 24, 3), got {rotations.shape}")
        if root.shape != (rotations.shape[0], 3):
            raise MocapError(self.source, f"root_position must have shape ({rotations.shape[0]}, 3), got {root.shape}")
        if rotations.shape[0] < 2:
            raise MocapError(self.source, f"a clip needs at least 2 frames, got {rotations.shape[0]}")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise MocapError(self.source, f"frame rate must be > 0, got {self.fps}")
        if not np.isfinite(rotations).all():
            raise MocapError(self.source, "rotations contain NaN or inf values")
        if not np.isfinite(root).all():
            raise MocapError(self.source, "root positions contain NaN or inf values")
        object.__setattr__(self, "rotations", rotations)
        object.__setattr__(self, "root_position", root)
        object.__setattr__(self, "fps", float(self.fps))

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])

    @property
    def duration_s(self) -> float:
        return (self.num_frames - 1) / self.fps

    def segment(self, start_s: float = 0.0, duration_s: float | None = None) -> "Motion":
        """The frames from ``start_s`` for ``duration_s`` seconds (to the end when None)."""
        cut = segment_frames(self.num_frames, self.fps, start_s, duration_s, self.source)
        return dataclasses.replace(self, rotations=self.rotations[cut], root_position=self.root_position[cut])


def segment_frames(num_frames: int, fps: float, start_s: float, duration_s: float | None, source: str) -> slice:
    """The frame slice from `start_s` lasting `duration_s` seconds (to the end when None)."""
    first = int(round(start_s * fps))
    if first < 0 or first >= num_frames - 1:
        raise MocapError(source, f"segment start {start_s} s is outside the clip ({(num_frames - 1) / fps:.3f} s)")
    last = num_frames if duration_s is None else first + int(round(duration_s * fps)) + 1
    return slice(first, last)
