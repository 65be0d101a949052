"""One entry point for every mocap format: detect it, load a `Motion`, or inspect it cheaply.

Formats: ``amass_smplh`` (``.npz`` with ``poses``), ``amass_smplx`` (``.npz`` with
``pose_body``), ``aistpp`` (``.pkl``), ``cmu`` (``.amc`` plus an ``.asf`` skeleton) and ``bvh``
(``.bvh``, any humanoid rig: `diffmimic.mocap.bvh`).
Every failure is a `MocapError` naming the file and the problem.
"""

from __future__ import annotations

import os

from diffmimic.mocap.aistpp import load_aistpp
from diffmimic.mocap.amass import LAYOUTS, inspect_amass, load_amass, npz_keys, require_file
from diffmimic.mocap.bvh import inspect_bvh, load_bvh
from diffmimic.mocap.cmu import inspect_cmu, load_cmu
from diffmimic.mocap.motion import MocapError, Motion

FORMATS = ("amass_smplh", "amass_smplx", "aistpp", "cmu", "bvh")


def detect_format(path: str | os.PathLike) -> str:
    """The format name of the mocap file at ``path``, from its suffix and (for ``.npz``) its keys.

    Only the ``.npz`` member names are read, never the arrays.
    """
    path = require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        keys = npz_keys(path)
        if "pose_body" in keys:
            return "amass_smplx"
        if "poses" in keys or "mocap_framerate" in keys:
            return "amass_smplh"
        if "qpos" in keys and "body_pos" in keys:
            raise MocapError(
                path,
                "this is a converted reference (REF.npz), not a mocap clip: "
                "load it with diffmimic.mocap.retarget.Reference.load",
            )
        raise MocapError(path, f"unknown format: .npz has neither 'poses' nor 'pose_body' (keys {sorted(keys)})")
    if suffix == ".pkl":
        return "aistpp"
    if suffix == ".amc":
        return "cmu"
    if suffix == ".bvh":
        return "bvh"
    if suffix == ".asf":
        raise MocapError(
            path, "unknown format: an .asf is a CMU skeleton; pass the .amc motion and give the .asf as skeleton_path"
        )
    raise MocapError(
        path,
        f"unknown format: suffix {suffix or '(none)'!r} "
        "(expected .npz for AMASS, .pkl for AIST++, .amc for CMU, .bvh for BVH)",
    )


def load_motion(
    path: str | os.PathLike, skeleton_path: str | os.PathLike | None = None, reader_options: dict | None = None
) -> Motion:
    """Loads the mocap clip at ``path`` in whichever format it is.

    Args:
      path: an AMASS ``.npz``, an AIST++ ``.pkl``, a CMU ``.amc`` or a ``.bvh``.
      skeleton_path: the CMU ``.asf`` skeleton, handed to the CMU reader as is (None lets it
        choose). Ignored for other formats.
      reader_options: a dataset spec's reader settings (`DatasetSpec.reader_options`: for BVH
        ``joint_map``, ``units``, ``up_axis``). Ignored by formats that take none.
    """
    fmt = detect_format(path)
    if fmt == "bvh":
        return load_bvh(path, reader_options)
    if fmt in LAYOUTS:
        return load_amass(path, LAYOUTS[fmt])
    if fmt == "aistpp":
        return load_aistpp(path)
    return load_cmu(path, skeleton_path)


def inspect_motion(path: str | os.PathLike, skeleton_path: str | os.PathLike | None = None) -> dict:
    """Summary of the clip at ``path`` without building a `Motion` where avoidable.

    Returns a dict with ``format``, ``frames``, ``fps``, ``duration_s`` ((frames - 1) / fps)
    and ``joints`` (24). For AMASS only the ``.npy`` headers and the frame-rate scalar are
    read; AIST++ pickles are small and are loaded; CMU files go to the CMU reader; for BVH only
    the hierarchy and the ``Frames``/``Frame Time`` lines are read.
    """
    fmt = detect_format(path)
    if fmt in LAYOUTS:
        return inspect_amass(path, LAYOUTS[fmt])
    if fmt == "cmu":
        return inspect_cmu(path, skeleton_path)
    if fmt == "bvh":
        return inspect_bvh(path)
    motion = load_aistpp(path)
    return {
        "format": fmt,
        "frames": motion.num_frames,
        "fps": motion.fps,
        "duration_s": motion.duration_s,
        "joints": motion.rotations.shape[1],
    }
