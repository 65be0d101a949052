"""Readers for AMASS clips: SMPL-H ``*_poses.npz`` and SMPL-X ``*_stageii.npz``.

AMASS stores SMPL-family parameters in a Z-up world, so no axis change is needed. Only the
22 body joints (root + 21) are read; the SMPL hand joints 22 and 23 are not part of the
SMPL-H/SMPL-X body pose and are set to the zero rotation.

The ``.npz`` archives are read member by member with :mod:`zipfile` and
:func:`numpy.lib.format.read_array` with ``allow_pickle=False``: only the numeric keys a reader
needs are touched, object arrays are refused (never unpickled), and each array header is
checked against the member size before any data is read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from diffmimic.character.skeleton import NEUTRAL_REST_JOINTS_SMPL, NUM_JOINTS
from diffmimic.mocap.motion import MocapError, Motion

BODY_JOINTS = 22  # SMPL joints 0-21: the root and the 21 body joints shared by SMPL, SMPL-H, SMPL-X.
GENDERS = ("neutral", "male", "female")


@dataclasses.dataclass(frozen=True)
class AmassLayout:
    """Where one AMASS flavour keeps the body pose and the frame rate.

    Attributes:
      format: the `Motion.format` name.
      pose_keys: ``(key, width)`` pairs whose (T, width) arrays, concatenated in order, start
        with the 66 root + body axis-angle values.
      framerate_key: the scalar frame-rate key.
    """

    format: str
    pose_keys: tuple[tuple[str, int], ...]
    framerate_key: str


SMPLH = AmassLayout("amass_smplh", (("poses", 156),), "mocap_framerate")
SMPLX = AmassLayout("amass_smplx", (("root_orient", 3), ("pose_body", 63)), "mocap_frame_rate")
LAYOUTS = {layout.format: layout for layout in (SMPLH, SMPLX)}


# --------------------------------------------------------------------------- error handling


def require_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path; MocapError when it is not an existing file."""
    path = Path(path)
    if not path.exists():
        raise MocapError(path, "file not found")
    if not path.is_file():
        raise MocapError(path, "not a regular file")
    return path


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Turns any exception raised while parsing ``path`` into a `MocapError` naming it.

    `MocapError` passes through unchanged; OS errors become "cannot read file"; everything
    else (bad zip, short read, unpickling or header errors, ...) becomes "corrupt or truncated
    file", so a caller never sees a half-loaded result or a foreign exception type.
    """
    try:
        yield
    except MocapError:
        raise
    except OSError as exc:
        raise MocapError(path, f"cannot read file: {type(exc).__name__}: {exc}", transient=True) from exc
    except Exception as exc:  # noqa: BLE001 - every parse failure must surface as MocapError
        raise MocapError(path, f"corrupt or truncated file: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- npz access


def npz_keys(path: str | os.PathLike) -> set[str]:
    """The array names stored in the ``.npz`` at ``path`` (no array is read)."""
    path = require_file(path)
    with reading(path), zipfile.ZipFile(path) as archive:
        return {name[:-4] for name in archive.namelist() if name.endswith(".npy")}


def _member(archive: zipfile.ZipFile, path: Path, key: str) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(f"{key}.npy")
    except KeyError:
        present = sorted(name[:-4] for name in archive.namelist() if name.endswith(".npy"))
        raise MocapError(path, f"missing key {key!r} (file has {present})") from None


def _header(archive: zipfile.ZipFile, path: Path, key: str, kinds: str = "biuf") -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the ``.npy`` header of member ``key``, checked against its size.

    ``kinds`` are the accepted dtype kinds (numeric by default); object arrays never are.
    """
    info = _member(archive, path, key)
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        # Format 3.0 differs from 2.0 only in the header's text encoding (utf-8 vs latin-1).
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran_order, dtype = read_header(stream)
    if dtype.hasobject:
        raise MocapError(path, f"key {key!r} is an object array; it is not read (no unpickling)")
    if dtype.kind not in kinds:
        what = "numeric" if kinds == "biuf" else "text"
        raise MocapError(path, f"key {key!r} must be {what}, got dtype {dtype}")
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if needed > info.file_size:
        raise MocapError(
            path,
            f"corrupt or truncated file: key {key!r} declares {shape} {dtype} "
            f"({needed} bytes) but holds {info.file_size} bytes",
        )
    return tuple(int(n) for n in shape), dtype


def npz_header(path: str | os.PathLike, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of numeric array ``key`` in the ``.npz`` at ``path``, read from its header only."""
    path = require_file(path)
    with reading(path), zipfile.ZipFile(path) as archive:
        return _header(archive, path, key)


def _read_numeric(archive: zipfile.ZipFile, path: Path, key: str) -> np.ndarray:
    """Numeric array ``key`` as float64; refuses object arrays and NaN/inf values."""
    _header(archive, path, key)
    with archive.open(_member(archive, path, key)) as stream:
        array = np.lib.format.read_array(stream, allow_pickle=False).astype(np.float64)
    if not np.isfinite(array).all():
        raise MocapError(path, f"key {key!r} contains NaN or inf values")
    return array


def _read_text(archive: zipfile.ZipFile, path: Path, key: str) -> str:
    """Scalar string ``key`` (stored as str or bytes), decoded."""
    _header(archive, path, key, kinds="US")
    with archive.open(_member(archive, path, key)) as stream:
        value = np.lib.format.read_array(stream, allow_pickle=False)
    if value.size != 1:
        raise MocapError(path, f"key {key!r} must be a single string, got {value.dtype} {value.shape}")
    text = value.reshape(()).item()
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


# --------------------------------------------------------------------------- checks


def check_framerate(path: str | os.PathLike, key: str, value: np.ndarray) -> float:
    """A frame-rate array of one element -> float; MocapError unless finite and > 0."""
    if value.size != 1:
        raise MocapError(path, f"key {key!r} must be a single number, got shape {value.shape}")
    fps = float(value.reshape(()))
    if not (np.isfinite(fps) and fps > 0):
        raise MocapError(path, f"key {key!r}: frame rate must be > 0, got {fps}")
    return fps


def check_frames(
    path: str | os.PathLike, key: str, shape: tuple[int, ...], width: int, frames: int | None = None
) -> int:
    """Checks that ``shape`` is (T, width) (with T == ``frames`` when given) and T >= 2; returns T."""
    expected = f"({'T' if frames is None else frames}, {width})"
    if len(shape) != 2 or shape[1] != width or (frames is not None and shape[0] != frames):
        raise MocapError(path, f"key {key!r} must have shape {expected}, got {shape}")
    if shape[0] < 2:
        raise MocapError(path, f"key {key!r}: a clip needs at least 2 frames, got {shape[0]}")
    return shape[0]


def body_pose_to_rotations(body_pose: np.ndarray) -> np.ndarray:
    """(T, 66) root + 21 body joint axis-angles -> (T, 24, 3), hand joints 22-23 at zero."""
    rotations = np.zeros((body_pose.shape[0], NUM_JOINTS, 3))
    rotations[:, :BODY_JOINTS] = body_pose.reshape(-1, BODY_JOINTS, 3)
    return rotations


def _gender(archive: zipfile.ZipFile, path: Path) -> str:
    """The ``gender`` key lower-cased, ``neutral`` when absent."""
    if "gender.npy" not in archive.namelist():
        return "neutral"
    gender = _read_text(archive, path, "gender").strip().lower()
    if gender not in GENDERS:
        raise MocapError(path, f"key 'gender' must be one of {GENDERS}, got {gender!r}")
    return gender


def _betas(archive: zipfile.ZipFile, path: Path) -> np.ndarray | None:
    """The ``betas`` key as a 1-D float array, None when absent."""
    if "betas.npy" not in archive.namelist():
        return None
    return _read_numeric(archive, path, "betas").reshape(-1)


# --------------------------------------------------------------------------- readers


def _frames(archive: zipfile.ZipFile, path: Path, layout: AmassLayout) -> int:
    """Checks the pose and ``trans`` headers of ``layout`` (shapes, frame counts); returns T."""
    (first_key, first_width), *rest = layout.pose_keys
    frames = check_frames(path, first_key, _header(archive, path, first_key)[0], first_width)
    for key, width in rest:
        check_frames(path, key, _header(archive, path, key)[0], width, frames)
    check_frames(path, "trans", _header(archive, path, "trans")[0], 3, frames)
    return frames


def load_amass(path: str | os.PathLike, layout: AmassLayout) -> Motion:
    """Reads an AMASS ``.npz`` laid out as ``layout`` (`SMPLH` or `SMPLX`)."""
    path = require_file(path)
    with reading(path), zipfile.ZipFile(path) as archive:
        _frames(archive, path, layout)
        fps = check_framerate(path, layout.framerate_key, _read_numeric(archive, path, layout.framerate_key))
        pose_parts = [_read_numeric(archive, path, key) for key, _ in layout.pose_keys]
        body_pose = np.concatenate(pose_parts, axis=1)[:, : 3 * BODY_JOINTS]
        trans = _read_numeric(archive, path, "trans")
        # SMPL rotates the body about the rest pelvis joint J0 and then adds `trans`, so the
        # pelvis sits at trans + J0. We use the neutral (betas = 0) J0 whatever the subject's
        # betas/gender: the skeleton everything is retargeted to is the neutral one, and the
        # shape-dependent shift of J0 is a few millimetres to centimetres.
        return Motion(
            rotations=body_pose_to_rotations(body_pose),
            root_position=trans + NEUTRAL_REST_JOINTS_SMPL[0],
            fps=fps,
            source=str(path),
            format=layout.format,
            betas=_betas(archive, path),
            gender=_gender(archive, path),
        )


def load_amass_smplh(path: str | os.PathLike) -> Motion:
    """Reads an AMASS SMPL-H ``*_poses.npz``.

    Keys: ``poses`` (T, 156) axis-angle (the first 66 values are root + 21 body joints),
    ``trans`` (T, 3) metres, ``mocap_framerate`` scalar; optional ``betas`` (B,) and
    ``gender`` (str or bytes).
    """
    return load_amass(path, SMPLH)


def load_amass_smplx(path: str | os.PathLike) -> Motion:
    """Reads an AMASS SMPL-X ``*_stageii.npz``.

    Keys: ``root_orient`` (T, 3), ``pose_body`` (T, 63) axis-angle, ``trans`` (T, 3) metres,
    ``mocap_frame_rate`` scalar; optional ``betas`` and ``gender``. Other keys (some are
    object arrays) are never read.
    """
    return load_amass(path, SMPLX)


def inspect_amass(path: str | os.PathLike, layout: AmassLayout) -> dict:
    """Frames, fps and duration of an AMASS ``.npz`` from array headers and the frame-rate scalar.

    Returns a dict with keys ``format``, ``frames``, ``fps``, ``duration_s``, ``joints``. The
    pose arrays themselves are not read.
    """
    path = require_file(path)
    with reading(path), zipfile.ZipFile(path) as archive:
        frames = _frames(archive, path, layout)
        fps = check_framerate(path, layout.framerate_key, _read_numeric(archive, path, layout.framerate_key))
    return {
        "format": layout.format,
        "frames": frames,
        "fps": fps,
        "duration_s": (frames - 1) / fps,
        "joints": NUM_JOINTS,
    }
