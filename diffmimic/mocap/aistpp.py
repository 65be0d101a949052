"""Reader for AIST++ motion pickles (``smpl_poses``, ``smpl_trans``, ``smpl_scaling``).

AIST++ stores SMPL parameters at 60 fps in a Y-up world; the reader turns them into the
Z-up world of `Motion`. Pickles can run arbitrary code when loaded, so they are read with
`SafeUnpickler`, which rebuilds NumPy arrays and scalars and refuses every other global.
"""

from __future__ import annotations

import codecs
import os
import pickle

import numpy as np
from scipy.spatial.transform import Rotation

from diffmimic.character.skeleton import NEUTRAL_REST_JOINTS_SMPL, NUM_JOINTS, Y_UP_TO_Z_UP
from diffmimic.mocap.amass import check_frames, reading, require_file
from diffmimic.mocap.motion import MocapError, Motion

AISTPP_FPS = 60.0

try:  # NumPy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


def _latin1_encode(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` restricted to latin-1: protocol-2 pickles rebuild array bytes with it."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"forbidden codec in pickle: {encoding!r}")
    return codecs.encode(text, "latin1")


# The globals a pickle of NumPy arrays and scalars refers to, under both the NumPy 1.x
# (numpy.core) and 2.x (numpy._core) module names; each maps to the object NumPy uses now.
_ALLOWED_GLOBALS = {
    **{(f"{core}.multiarray", "_reconstruct"): _multiarray._reconstruct for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.multiarray", "scalar"): _multiarray.scalar for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): _numeric._frombuffer for core in ("numpy.core", "numpy._core")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds NumPy arrays, dtypes and scalars.

    Plain containers (dict, list, tuple, str, numbers) are native pickle opcodes and need no
    global; any other global raises `MocapError` ("forbidden pickle content: module.name")
    before it is imported or called.
    """

    def __init__(self, file, path: str | os.PathLike):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise MocapError(self._path, f"forbidden pickle content: {module}.{name}") from None

    def persistent_load(self, pid):
        raise MocapError(self._path, "forbidden pickle content: persistent id")


def safe_load_pickle(path: str | os.PathLike) -> dict:
    """Loads the pickle at ``path`` with `SafeUnpickler`; the top level must be a dict."""
    path = require_file(path)
    with reading(path), open(path, "rb") as stream:
        data = SafeUnpickler(stream, path).load()
    if not isinstance(data, dict):
        raise MocapError(path, f"top level must be a dict, got {type(data).__name__}")
    return data


def _numeric(path: str | os.PathLike, data: dict, key: str) -> np.ndarray:
    """``data[key]`` as a finite float64 array; MocapError naming the key otherwise."""
    if key not in data:
        raise MocapError(path, f"missing key {key!r} (file has {sorted(map(str, data))})")
    value = np.asarray(data[key])
    if value.dtype.kind not in "biuf":
        raise MocapError(path, f"key {key!r} must be numeric, got {type(data[key]).__name__} of dtype {value.dtype}")
    array = value.astype(np.float64)
    if not np.isfinite(array).all():
        raise MocapError(path, f"key {key!r} contains NaN or inf values")
    return array


def _trans_metres(path: str | os.PathLike, data: dict, frames: int) -> np.ndarray:
    """(T, 3) root translation in metres: ``smpl_trans / smpl_scaling`` when a scale is given."""
    trans = _numeric(path, data, "smpl_trans")
    check_frames(path, "smpl_trans", trans.shape, 3, frames)
    if "smpl_scaling" not in data:  # trimmed files: the translation is already in metres
        return trans
    scaling = _numeric(path, data, "smpl_scaling")
    if scaling.size != 1 or not scaling.reshape(()) > 0:
        raise MocapError(path, f"key 'smpl_scaling' must be one number > 0, got {scaling.tolist()}")
    return trans / scaling.reshape(())


def yup_to_zup(root_rotvec: np.ndarray, pelvis_yup: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-expresses a Y-up world root orientation (T, 3) axis-angle and pelvis (T, 3) in Z-up."""
    root_zup = Rotation.from_matrix(Y_UP_TO_Z_UP @ Rotation.from_rotvec(root_rotvec).as_matrix())
    return root_zup.as_rotvec(), pelvis_yup @ Y_UP_TO_Z_UP.T


def load_aistpp(path: str | os.PathLike) -> Motion:
    """Reads an AIST++ motion ``.pkl`` (60 fps, Y-up world) into a Z-up `Motion`.

    Keys: ``smpl_poses`` (T, 72) SMPL axis-angle, ``smpl_trans`` (T, 3), optional
    ``smpl_scaling`` (1,) (when present, metres = smpl_trans / smpl_scaling; when absent
    smpl_trans is already metres). Other keys (``smpl_loss``) are ignored.
    """
    path = require_file(path)
    data = safe_load_pickle(path)
    with reading(path):
        poses = _numeric(path, data, "smpl_poses")
        frames = check_frames(path, "smpl_poses", poses.shape, 3 * NUM_JOINTS)
        trans = _trans_metres(path, data, frames)
        rotations = poses.reshape(frames, NUM_JOINTS, 3).copy()
        # SMPL rotates about the rest pelvis joint J0 and then adds trans, so the pelvis is at
        # trans + J0. The neutral (betas = 0) J0 is used, as for AMASS (see amass.py).
        rotations[:, 0], root_position = yup_to_zup(rotations[:, 0], trans + NEUTRAL_REST_JOINTS_SMPL[0])
        return Motion(
            rotations=rotations, root_position=root_position, fps=AISTPP_FPS, source=str(path), format="aistpp"
        )
