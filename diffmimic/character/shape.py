"""Subject-specific skeletons from an SMPL body model and shape coefficients (betas).

The SMPL model files are licensed separately and are never shipped with this project: the user
downloads them (https://smpl.is.tue.mpg.de, or SMPL-H/SMPL-X from their sites) and passes the
path. This needs the optional ``smplx`` and ``torch`` packages::

    pip install 'diffmimic-factory[smplx]'
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
from pathlib import Path

import numpy as np

from diffmimic.character.skeleton import NUM_JOINTS, Skeleton

GENDERS = ("neutral", "male", "female")
# The model arrays smplx's SMPL class reads.
_MODEL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
# Joint regressor rows used for the 24 SMPL joints, by model family (rows of the model's
# regressor). SMPL-H and SMPL-X share SMPL's 22 body joints; they have finger joints instead
# of SMPL's two hand joints, which are approximated by the index finger's first joint.
_JOINT_ROWS = {
    24: tuple(range(24)),  # SMPL
    52: tuple(range(22)) + (22, 37),  # SMPL-H: 22-36 left hand, 37-51 right hand
    55: tuple(range(22)) + (25, 40),  # SMPL-X: 22 jaw, 23-24 eyes, 25-39 left, 40-54 right hand
}


def _import_smplx():
    try:
        import smplx  # deferred: optional (the smplx extra), needed only here
        import torch
    except ImportError as exc:
        raise ImportError(
            "building a skeleton from an SMPL model needs the optional packages smplx and torch "
            f"({exc}); install them with: pip install 'diffmimic-factory[smplx]'"
        ) from exc
    return smplx, torch


def _model_file(model_path: str | os.PathLike, gender: str) -> Path:
    path = Path(model_path).expanduser()
    if path.is_dir():
        tried = [path / sub / f"SMPL_{gender.upper()}.{ext}" for sub in ("", "smpl") for ext in ("npz", "pkl")]
        for candidate in tried:
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"no SMPL model for gender {gender!r} in {path}: tried "
            + ", ".join(str(p) for p in tried)
            + ". Download the SMPL model files from https://smpl.is.tue.mpg.de (registration "
            "required) and pass the .npz/.pkl file or its folder."
        )
    if not path.exists():
        raise FileNotFoundError(
            f"SMPL model file not found: {path}. Download the SMPL model files from "
            "https://smpl.is.tue.mpg.de (registration required) and pass the .npz/.pkl path."
        )
    if path.suffix.lower() not in (".npz", ".pkl"):
        raise ValueError(f"{path}: an SMPL model must be a .npz or .pkl file, got {path.suffix or 'no suffix'!r}")
    return path


def _load_model_arrays(path: Path) -> dict:
    """The arrays the SMPL class needs, from a .npz (no unpickling) or a .pkl."""
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                data = {key: archive[key] for key in _MODEL_KEYS if key in archive.files}
        else:
            # The official SMPL .pkl files are pickles (some with chumpy arrays); smplx reads
            # them the same way. Only load model files from a trusted source.
            with open(path, "rb") as handle:
                data = pickle.load(handle, encoding="latin1")
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"{path}: unpickling this SMPL model needs the module {exc.name!r} (the original SMPL "
            "pickles use chumpy); install it or convert the model to .npz"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any parse failure: name the file
        raise ValueError(f"{path}: cannot read the SMPL model: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not an SMPL model file (a {type(data).__name__}, not a dict)")
    missing = [key for key in _MODEL_KEYS if key not in data]
    if missing:
        raise ValueError(f"{path}: not an SMPL model file, missing arrays {missing}")
    return {key: data[key] for key in _MODEL_KEYS}


def skeleton_from_smpl_model(model_path: str | os.PathLike, betas=None, gender: str = "neutral") -> Skeleton:
    """The rest skeleton of an SMPL body with shape ``betas``.

    Args:
      model_path: an SMPL model file (``.npz`` preferred: read without unpickling; or the
        official ``.pkl``), or a folder holding ``SMPL_<GENDER>.npz|pkl`` (directly or in
        ``smpl/``). SMPL-H (52 joints) and SMPL-X (55 joints) model files work too: their
        hand joints stand in for SMPL's two hand joints.
      betas: shape coefficients (any length; None or all zeros: the template body). Values
        beyond the model's shape space must be zero.
      gender: ``neutral``, ``male`` or ``female``; picks the file inside a folder and names
        the skeleton.

    Returns:
      ``Skeleton(joints, name=f"smpl_{gender}_betas_<hash>")`` where ``joints`` (24, 3) are
      ``J_regressor @ (v_template + shapedirs @ betas)`` in the SMPL Y-up frame and the hash
      (8 hex digits) identifies the betas and the resulting joints.
    """
    gender = str(gender).lower()
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
    smplx, torch = _import_smplx()
    path = _model_file(model_path, gender)
    arrays = _load_model_arrays(path)

    betas = np.zeros(0) if betas is None else np.asarray(betas, dtype=np.float64).reshape(-1)
    if not np.isfinite(betas).all():
        raise ValueError(f"betas must be finite, got {betas}")
    betas = np.trim_zeros(betas, "b")
    num_shapes = int(np.shape(arrays["shapedirs"])[-1])
    if betas.size > num_shapes:
        raise ValueError(
            f"{path}: the model has {num_shapes} shape components but {betas.size} non-zero betas were given"
        )
    num_betas = max(1, betas.size)

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10-beta models
            model = smplx.SMPL(
                model_path=str(path),
                data_struct=smplx.utils.Struct(**arrays),
                gender=gender,
                num_betas=num_betas,
                dtype=torch.float64,
                create_betas=False,
                create_global_orient=False,
                create_body_pose=False,
                create_transl=False,
            )
    except Exception as exc:  # noqa: BLE001 - name the file whatever smplx objects to
        raise ValueError(
            f"{path}: smplx cannot build an SMPL model from this file: {type(exc).__name__}: {exc}"
        ) from exc

    # smplx's buffers went through float32; regress in float64 from the file's arrays with
    # smplx's own blend-shape and regressor functions. (smplx also keeps at most 10 shape
    # components for models smaller than SMPL-X, so the blend shapes come from the file.)
    def as_tensor(array):
        return torch.as_tensor(smplx.utils.to_np(array, dtype=np.float64))

    regressor = as_tensor(arrays["J_regressor"])
    v_template = as_tensor(arrays["v_template"])
    rows = _JOINT_ROWS.get(int(regressor.shape[0]))
    if rows is None or regressor.shape[1] != v_template.shape[0] or model.get_num_verts() != v_template.shape[0]:
        raise ValueError(
            f"{path}: unsupported joint regressor of shape {tuple(regressor.shape)} "
            f"for {v_template.shape[0]} vertices (expected 24, 52 or 55 joints)"
        )
    shapedirs = as_tensor(arrays["shapedirs"])[..., :num_betas]
    coefficients = torch.zeros(1, num_betas, dtype=torch.float64)
    coefficients[0, : betas.size] = torch.as_tensor(betas)
    with torch.no_grad():
        v_shaped = v_template[None] + smplx.lbs.blend_shapes(coefficients, shapedirs)
        joints = smplx.lbs.vertices2joints(regressor, v_shaped)[0]
    joints = joints.cpu().numpy()[list(rows)].astype(np.float64)
    assert joints.shape == (NUM_JOINTS, 3)

    digest = hashlib.sha1()
    digest.update(np.round(betas, 6).astype("<f8").tobytes())
    digest.update(np.round(joints, 6).astype("<f8").tobytes())
    return Skeleton(joints, name=f"smpl_{gender}_betas_{digest.hexdigest()[:8]}")
