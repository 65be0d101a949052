"""BVH (Biovision hierarchy) files: read any humanoid rig onto the SMPL skeleton, and write SMPL motion.

Reading
-------
The ``HIERARCHY`` gives each joint's ``OFFSET`` from its parent and its ``CHANNELS`` (any subset
and order of ``X/Y/Zposition`` and ``X/Y/Zrotation``, on any joint); ``End Site`` blocks give the
tips of leaf bones. ``MOTION`` gives ``Frames:``, ``Frame Time:`` and one line of channel values
per frame. Tabs or spaces, LF or CRLF. A joint's local rotation is the product of its rotation
channels in the order they are listed (``Zrotation Xrotation Yrotation`` is ``Rz Rx Ry``, degrees);
a joint with position channels takes them as its translation from the parent (the axes it lacks
keep the OFFSET's), the others are at their OFFSET. Everything malformed (a truncated file, frame
lines whose value count does not match the channels, NaN, absurd numbers, a rig without legs)
raises :class:`~diffmimic.mocap.motion.MocapError` naming the file and the problem.

`read_bvh_header` reads the hierarchy and the ``Frames``/``Frame Time`` lines only (the catalog's
cheap inspection); `read_bvh` parses the frame lines with NumPy (a 45 s, 60 fps clip in a tenth of
a second: see docs/bvh.md for the measurement against the ``bvhio`` package).

Rigs and units
--------------
`map_rig` finds the source joint of each of the 24 SMPL joints from the joint names: built-in maps
for Mixamo (any ``mixamorig*:`` namespace), the CMU/cgspeed conversions, LAFAN1 (Ubisoft), the
21-joint ``Hips``/``LeftUpLeg`` family, Bandai Namco's research sets, Xsens MVN (both its current
and its older BVH names) and this project's own SMPL export, with a keyword match for other rigs;
a ``joint_map`` (SMPL joint name -> file joint name) overrides or completes any of them. The spine
joints between the pelvis and the neck, however many, are spread over SMPL's three spine joints.
Joints no SMPL joint takes (fingers, eyes, twist and helper bones) are ignored; they still carry
their children in the kinematics. Units are recognised from the leg length (hip -> knee -> ankle,
a rotation-free measure): metres, centimetres, millimetres, inches or the CMU conversions'
inches/0.45, whichever puts it nearest an adult's 0.85 m; the up axis from the posed clip (the
axis the head is above the feet along, on average). Both can be given instead.

Retargeting onto SMPL (as the CMU ASF/AMC reader does)
------------------------------------------------------
Each SMPL joint ``j`` takes the global rotation ``L_b`` of its source joint ``b`` times a constant
alignment, ``G_j = U L_b A_j``, where ``U`` turns the file's up axis into the Z-up world. When the
file's rest pose (all rotations zero) stands (legs down, spine up: Mixamo, CMU, Xsens ...), ``A_j``
is taken there: ``A_j = S(B s_j -> d_b) B`` with ``B`` the rest body frame (left, up, forward from
the hips and the up axis), ``s_j`` the SMPL rest direction of the bone from ``j`` and ``d_b`` the
file's rest direction of the same bone, ``S`` the least rotation between them. When it does not
stand (LAFAN1's rest pose lies along x with every limb folded onto it) the same construction is
made in every frame from the posed joints and ``A_j`` is the rotation mean of
``L_b(t)^T S(F(t) s_j -> d_b(t)) F(t)`` over the clip. Local SMPL rotations are
``G_parent^T G_j``; the pelvis follows the file's pelvis joint, scaled by the ratio of the SMPL
leg length to the file's, and the clip is then grounded on its fitted floor by `retarget`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from diffmimic.character.skeleton import (
    NUM_JOINTS,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    Skeleton,
    neutral_skeleton,
)
from diffmimic.mocap.motion import MocapError, Motion

# Metres per file unit of the units `detect_units` tells apart.
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": 0.0254 / 0.45}
ADULT_LEG_M = 0.85  # hip -> knee -> ankle of an adult, the unit guess's target
LEG_RANGE_M = (0.3, 1.6)  # a leg outside this in every unit: units "unknown" (the scale still works)
UP_AXES = {"x": (1, 0, 0), "-x": (-1, 0, 0), "y": (0, 1, 0), "-y": (0, -1, 0), "z": (0, 0, 1), "-z": (0, 0, -1)}
MAX_ANGLE_DEG = 1.0e5  # rotation values beyond this are corrupt, not many turns
MAX_EXTENT_M = 1.0e4  # a pelvis that travels further than this (10 km) is corrupt
STANDING_COS = 0.8  # rest legs within ~37 degrees of down and spine of up: the rest pose stands
ALIGN_FRAMES = 240  # frames averaged for the alignments of a rig whose rest pose does not stand

_AXIS_CHANNELS = {"Xposition": 0, "Yposition": 1, "Zposition": 2}
_ROTATION_CHANNELS = {"Xrotation": "X", "Yrotation": "Y", "Zrotation": "Z"}

# ----------------------------------------------------------------------------- rig maps
# Roles: the 24 SMPL joints by name, except the spine1..3 (from the chain between pelvis and neck).
# Names are compared normalised (`normalize_name`: no namespace, lower case, no _ . - or spaces).
REQUIRED = ("pelvis", "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle")


def _sides(left: dict[str, tuple[str, ...]], right_of) -> dict[str, tuple[str, ...]]:
    """A role table from its left side: right-side roles with names made by `right_of`."""
    table = dict(left)
    for role, names in left.items():
        if role.startswith("left_"):
            table["right_" + role[5:]] = tuple(right_of(name) for name in names)
    return table


def _left_to_right(name: str) -> str:
    return name.replace("left", "right", 1)


def _suffix_l_to_r(name: str) -> str:
    return name[:-1] + "r" if name.endswith("l") else name


# The Hips/LeftUpLeg naming shared by Mixamo, the CMU (cgspeed) conversions, LAFAN1 and the
# 21-joint skeleton of the style-transfer sets.
_HIPS_FAMILY = _sides(
    {
        "pelvis": ("hips",),
        "left_hip": ("leftupleg",),
        "left_knee": ("leftleg",),
        "left_ankle": ("leftfoot",),
        "left_foot": ("lefttoebase", "lefttoe"),
        "neck": ("neck", "neck1"),
        "head": ("head",),
        "left_collar": ("leftshoulder",),
        "left_shoulder": ("leftarm",),
        "left_elbow": ("leftforearm",),
        "left_wrist": ("lefthand",),
        "left_hand": (),
    },
    _left_to_right,
)
# Bandai Namco Research Motiondataset: Hips, Spine, Chest, Neck, Head, Shoulder_L, UpperArm_L,
# LowerArm_L, Hand_L, UpperLeg_L, LowerLeg_L, Foot_L, Toes_L (and _R), under joint_Root.
_BANDAI = _sides(
    {
        "pelvis": ("hips",),
        "left_hip": ("upperlegl",),
        "left_knee": ("lowerlegl",),
        "left_ankle": ("footl",),
        "left_foot": ("toesl", "toel"),
        "neck": ("neck",),
        "head": ("head",),
        "left_collar": ("shoulderl",),
        "left_shoulder": ("upperarml",),
        "left_elbow": ("lowerarml",),
        "left_wrist": ("handl",),
        "left_hand": (),
    },
    _suffix_l_to_r,
)
# Xsens MVN: Pelvis, L5, L3, T12, T8, Neck, Head, LeftShoulder (the clavicle), LeftUpperArm,
# LeftForeArm, LeftHand, LeftUpperLeg, LeftLowerLeg, LeftFoot, LeftToe.
_XSENS = _sides(
    {
        "pelvis": ("pelvis", "hips"),
        "left_hip": ("leftupperleg",),
        "left_knee": ("leftlowerleg",),
        "left_ankle": ("leftfoot",),
        "left_foot": ("lefttoe",),
        "neck": ("neck",),
        "head": ("head",),
        "left_collar": ("leftshoulder",),
        "left_shoulder": ("leftupperarm",),
        "left_elbow": ("leftforearm",),
        "left_wrist": ("lefthand",),
        "left_hand": (),
    },
    _left_to_right,
)
# Older MVN Studio BVH exports: Hips, Chest..Chest4, Neck, Head, LeftCollar, LeftShoulder (the
# upper arm), LeftElbow, LeftWrist, LeftHip, LeftKnee, LeftAnkle, LeftToe.
_XSENS_LEGACY = _sides(
    {
        "pelvis": ("hips", "pelvis"),
        "left_hip": ("lefthip",),
        "left_knee": ("leftknee",),
        "left_ankle": ("leftankle",),
        "left_foot": ("lefttoe",),
        "neck": ("neck",),
        "head": ("head",),
        "left_collar": ("leftcollar",),
        "left_shoulder": ("leftshoulder",),
        "left_elbow": ("leftelbow",),
        "left_wrist": ("leftwrist",),
        "left_hand": (),
    },
    _left_to_right,
)
# SMPL joint names: this project's (left_hip ...: `write_bvh` writes them) and the L_Hip style.
_SMPL = {name: (name.replace("_", ""),) for name in SMPL_JOINT_NAMES}
for _name in SMPL_JOINT_NAMES:
    if _name.startswith(("left_", "right_")):
        _SMPL[_name] += (_name[0] + _name.split("_", 1)[1],)  # lhip, rknee ...
_SMPL["left_foot"] += ("ltoe",)
_SMPL["right_foot"] += ("rtoe",)


def _has(*names: str):
    return lambda normal, raw: all(name in normal for name in names)


# (rig, recognised by, role table), tried in order; the first whose legs are all found is used.
RIGS = (
    ("smpl", lambda normal, raw: {"pelvis", "spine3"} <= normal or {"pelvis", "lhip", "lknee"} <= normal, _SMPL),
    ("mixamo", lambda normal, raw: any(name.lower().startswith("mixamorig") for name in raw), _HIPS_FAMILY),
    ("cmu", _has("lhipjoint", "leftupleg"), _HIPS_FAMILY),
    (
        "lafan1",
        lambda normal, raw: {"lefttoe", "spine2", "leftupleg"} <= normal and "lefttoebase" not in normal,
        _HIPS_FAMILY,
    ),
    ("hips_leftupleg", _has("hips", "leftupleg"), _HIPS_FAMILY),
    ("bandai_namco", _has("upperlegl", "lowerlegl"), _BANDAI),
    ("xsens_mvn", _has("leftupperleg", "leftlowerleg"), _XSENS),
    ("xsens_mvn_legacy", _has("lefthip", "leftknee", "leftankle", "leftcollar"), _XSENS_LEGACY),
)

# Keyword fallback for rigs none of the above names: (role part, words), tried on names that
# carry a side ("left"/"right", or an l/r prefix or suffix).
_KEYWORDS = (
    ("hip", ("upleg", "upperleg", "thigh", "hip", "femur")),
    ("knee", ("lowerleg", "knee", "shin", "calf", "tibia", "leg")),
    ("ankle", ("ankle", "foot")),
    ("foot", ("toebase", "toes", "toe", "ball")),
    ("collar", ("collar", "clavicle", "clav")),
    ("shoulder", ("upperarm", "uparm", "humerus", "shoulder", "arm")),
    ("elbow", ("forearm", "lowerarm", "elbow", "radius")),
    ("wrist", ("wrist", "hand")),
)


def normalize_name(name: str) -> str:
    """A joint name for matching: no namespace (``mixamorig7:``), lower case, no ``_ . -`` or spaces."""
    return re.sub(r"[\s_.\-]", "", name.rsplit(":", 1)[-1]).lower()


# ----------------------------------------------------------------------------- parsing


@dataclasses.dataclass(frozen=True)
class BvhHeader:
    """A BVH hierarchy and frame count.

    Attributes:
      path: the file.
      names: (J,) joint names in file order (parents before children; End Sites not included).
      parents: (J,) parent index of each joint, -1 for the root.
      offsets: (J, 3) each joint's OFFSET from its parent, file units and axes.
      channels: (J,) each joint's channel names, in file order.
      end_sites: joint index -> (K, 3) the OFFSETs of its End Sites.
      frames: the ``Frames:`` count.
      frame_time_s: the ``Frame Time:`` value.
    """

    path: str
    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    end_sites: dict
    frames: int
    frame_time_s: float

    @property
    def num_channels(self) -> int:
        return sum(len(c) for c in self.channels)

    @property
    def fps(self) -> float:
        """1 / Frame Time, rounded to a whole rate where the file's rounding of Frame Time is all
        that separates them (0.016667 s: 60 fps, not 59.9988)."""
        fps = 1.0 / self.frame_time_s
        return float(round(fps)) if abs(fps - round(fps)) < 5e-4 * fps else fps

    def children(self, joint: int) -> list[int]:
        return [child for child, parent in enumerate(self.parents) if parent == joint]


def _read_text(path: Path) -> str:
    try:
        with open(path, encoding="latin-1", newline=None) as handle:  # universal newlines: CRLF too
            return handle.read()
    except FileNotFoundError:
        raise MocapError(path, "file not found") from None
    except IsADirectoryError:
        raise MocapError(path, "not a regular file") from None
    except OSError as error:
        raise MocapError(path, f"cannot read the file: {error}", transient=True) from None


def _parse_hierarchy(path, text: str):
    """(names, parents, offsets, channels, end_sites) from the HIERARCHY text."""
    tokens = text.split()
    if not tokens or tokens[0].upper() != "HIERARCHY":
        raise MocapError(path, "not a BVH file: it does not start with HIERARCHY")
    names, parents, offsets, channels, end_sites = [], [], [], [], {}
    stack: list[int | None] = []  # joint index per open brace (None: an End Site)
    pending_parent, i = None, 1
    expecting_block = None  # "joint" or "end" after a ROOT/JOINT name or End Site

    def need(count: int, what: str) -> list[str]:
        if i + count > len(tokens):
            raise MocapError(path, f"hierarchy ends inside {what} (file truncated?)")
        return tokens[i : i + count]

    while i < len(tokens):
        token = tokens[i]
        keyword = token.upper()
        if keyword in ("ROOT", "JOINT"):
            if keyword == "ROOT" and stack:
                raise MocapError(path, "ROOT inside another joint's block")
            if keyword == "JOINT" and (not stack or stack[-1] is None):
                raise MocapError(path, "JOINT outside a joint's block")
            end = i + 1
            while end < len(tokens) and tokens[end] != "{":
                end += 1
            if end == i + 1 or end >= len(tokens):
                raise MocapError(path, f"{keyword} without a name and a block")
            names.append(" ".join(tokens[i + 1 : end]))
            parents.append(stack[-1] if stack else -1)
            offsets.append(None)
            channels.append(())
            expecting_block, i = "joint", end
        elif keyword == "END":
            if not stack or stack[-1] is None or i + 1 >= len(tokens) or tokens[i + 1].upper() != "SITE":
                raise MocapError(path, "End Site outside a joint's block")
            expecting_block, i = "end", i + 2
        elif token == "{":
            if expecting_block is None:
                raise MocapError(path, "unexpected '{' in the hierarchy")
            stack.append(len(names) - 1 if expecting_block == "joint" else None)
            pending_parent = stack[-2] if expecting_block == "end" else None
            expecting_block, i = None, i + 1
        elif token == "}":
            if not stack:
                raise MocapError(path, "unbalanced '}' in the hierarchy")
            closed = stack.pop()
            if closed is not None and offsets[closed] is None:
                raise MocapError(path, f"joint {names[closed]!r} has no OFFSET")
            i += 1
        elif keyword == "OFFSET":
            values = need(4, "an OFFSET")[1:]
            offset = _finite(path, values, "OFFSET")
            if not stack:
                raise MocapError(path, "OFFSET outside a joint's block")
            if stack[-1] is None:
                end_sites.setdefault(pending_parent, []).append(offset)
            else:
                offsets[stack[-1]] = offset
            i += 4
        elif keyword == "CHANNELS":
            if not stack or stack[-1] is None:
                raise MocapError(path, "CHANNELS outside a joint's block")
            try:
                count = int(need(2, "CHANNELS")[1])
            except ValueError:
                raise MocapError(
                    path, f"joint {names[stack[-1]]!r}: CHANNELS count {tokens[i + 1]!r} is not a number"
                ) from None
            listed = tuple(need(2 + count, "CHANNELS")[2:])
            bad = [c for c in listed if c not in _AXIS_CHANNELS and c not in _ROTATION_CHANNELS]
            if bad or len(set(listed)) != len(listed) or count < 0:
                raise MocapError(path, f"joint {names[stack[-1]]!r}: bad or repeated channels {' '.join(listed)!r}")
            channels[stack[-1]] = listed
            i += 2 + count
        else:
            raise MocapError(path, f"unexpected {token!r} in the hierarchy")
    if stack:
        raise MocapError(path, "the hierarchy is not closed (file truncated before MOTION?)")
    if not names:
        raise MocapError(path, "the hierarchy has no joints")
    return (
        tuple(names),
        tuple(parents),
        np.array(offsets, dtype=np.float64),
        tuple(channels),
        {joint: np.array(sites) for joint, sites in end_sites.items()},
    )


def _finite(path, values: list[str], what: str) -> np.ndarray:
    try:
        numbers = np.array([float(v) for v in values])
    except ValueError:
        raise MocapError(path, f"non-numeric value in {what}: {' '.join(values)!r}") from None
    if not np.isfinite(numbers).all():
        raise MocapError(path, f"NaN or infinite value in {what}")
    return numbers


_FRAMES = re.compile(r"^\s*Frames\s*:\s*(\S+)\s*$", re.IGNORECASE)
_FRAME_TIME = re.compile(r"^\s*Frame\s+Time\s*:\s*(\S+)\s*$", re.IGNORECASE)


def _motion_header(path, lines: list[str]) -> tuple[int, float, int]:
    """(frames, frame time, index of the first frame line) from the lines after MOTION."""
    found = [None, None]
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        for slot, pattern, what in ((0, _FRAMES, "Frames"), (1, _FRAME_TIME, "Frame Time")):
            match = pattern.match(line)
            if match:
                try:
                    found[slot] = int(match.group(1)) if slot == 0 else float(match.group(1))
                except ValueError:
                    raise MocapError(path, f"bad {what} value {match.group(1)!r}") from None
                break
        else:
            raise MocapError(path, f"expected 'Frames:' and 'Frame Time:' after MOTION, got {line.strip()[:40]!r}")
        if None not in found:
            frames, frame_time = found
            if frames < 2:
                raise MocapError(path, f"a clip needs at least 2 frames, got Frames: {frames}")
            if not (math.isfinite(frame_time) and 1e-4 < frame_time <= 1.0):
                raise MocapError(path, f"Frame Time must be in (0.0001, 1] s, got {frame_time}")
            return frames, frame_time, index + 1
    raise MocapError(path, "no 'Frames:' and 'Frame Time:' lines after MOTION (file truncated?)")


def _split_motion(path, text: str) -> tuple[str, str]:
    match = re.search(r"^\s*MOTION\s*$", text, re.MULTILINE)
    if match is None:
        raise MocapError(path, "no MOTION section (file truncated?)")
    return text[: match.start()], text[match.end() :]


def read_bvh_header(path: str | os.PathLike) -> BvhHeader:
    """The hierarchy and the ``Frames``/``Frame Time`` lines, without reading the frame lines."""
    path = Path(path)
    head = []
    try:
        with open(path, encoding="latin-1", newline=None) as handle:
            for line in handle:
                head.append(line)
                if _FRAME_TIME.match(line):
                    break
    except FileNotFoundError:
        raise MocapError(path, "file not found") from None
    except IsADirectoryError:
        raise MocapError(path, "not a regular file") from None
    except OSError as error:
        raise MocapError(path, f"cannot read the file: {error}", transient=True) from None
    hierarchy, motion = _split_motion(path, "".join(head))
    frames, frame_time, _ = _motion_header(path, motion.splitlines())
    return BvhHeader(str(path), *_parse_hierarchy(path, hierarchy), frames=frames, frame_time_s=frame_time)


def read_bvh(path: str | os.PathLike) -> tuple[BvhHeader, np.ndarray]:
    """The header and the frame values (frames, channels), file units and degrees."""
    path = Path(path)
    hierarchy, motion = _split_motion(path, _read_text(path))
    lines = motion.splitlines()
    frames, frame_time, first = _motion_header(path, lines)
    header = BvhHeader(str(path), *_parse_hierarchy(path, hierarchy), frames=frames, frame_time_s=frame_time)
    width = header.num_channels
    data = [line for line in lines[first:] if line.strip()]
    try:
        values = np.array(" ".join(data).split(), dtype=np.float64)
    except ValueError:
        for number, line in enumerate(data, 1):
            try:
                [float(v) for v in line.split()]
            except ValueError:
                raise MocapError(path, f"frame {number}: non-numeric value in {line.strip()[:60]!r}") from None
        raise
    if values.size != frames * width or len(data) != frames:
        for number, line in enumerate(data[:frames], 1):
            count = len(line.split())
            if count != width:
                raise MocapError(
                    path,
                    f"frame {number} has {count} values, but the hierarchy's "
                    f"{len(header.names)} joints have {width} channels",
                )
        if len(data) < frames:
            raise MocapError(path, f"truncated: Frames: {frames}, but only {len(data)} frame lines")
        raise MocapError(path, f"{len(data)} frame lines, but Frames: {frames}")
    values = values.reshape(frames, width)
    if not np.isfinite(values).all():
        frame = int(np.argwhere(~np.isfinite(values))[0, 0]) + 1
        raise MocapError(path, f"frame {frame}: NaN or infinite value")
    return header, values


# ----------------------------------------------------------------------------- kinematics


def forward_kinematics(header: BvhHeader, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global joint rotations (T, J, 3, 3) and positions (T, J, 3), file units and axes."""
    frames, joints = values.shape[0], len(header.names)
    local_rot = np.broadcast_to(np.eye(3), (frames, joints, 3, 3)).copy()
    local_pos = np.broadcast_to(header.offsets, (frames, joints, 3)).copy()
    groups: dict[str, list[tuple[int, list[int]]]] = {}
    column = 0
    for joint, listed in enumerate(header.channels):
        rotation_columns, order = [], ""
        for channel in listed:
            if channel in _AXIS_CHANNELS:
                local_pos[:, joint, _AXIS_CHANNELS[channel]] = values[:, column]
            else:
                order += _ROTATION_CHANNELS[channel]
                rotation_columns.append(column)
            column += 1
        if order:
            groups.setdefault(order, []).append((joint, rotation_columns))
    for order, members in groups.items():  # one scipy call per rotation order
        angles = np.stack([values[:, cols] for _, cols in members], axis=1)  # (T, n, k)
        if np.abs(angles).max() > MAX_ANGLE_DEG:
            raise MocapError(header.path, f"rotation values beyond {MAX_ANGLE_DEG:g} degrees (corrupt file)")
        matrices = Rotation.from_euler(order, angles.reshape(-1, len(order)), degrees=True).as_matrix()
        local_rot[:, [joint for joint, _ in members]] = matrices.reshape(frames, len(members), 3, 3)
    rotations = np.empty_like(local_rot)
    positions = np.empty_like(local_pos)
    for joint, parent in enumerate(header.parents):
        if parent < 0:
            rotations[:, joint], positions[:, joint] = local_rot[:, joint], local_pos[:, joint]
        else:
            rotations[:, joint] = rotations[:, parent] @ local_rot[:, joint]
            positions[:, joint] = positions[:, parent] + np.einsum(
                "tij,tj->ti", rotations[:, parent], local_pos[:, joint]
            )
    return rotations, positions


def rest_positions(header: BvhHeader) -> np.ndarray:
    """(J, 3) joint positions with every rotation zero (OFFSETs only), file units and axes."""
    positions = np.empty((len(header.names), 3))
    for joint, parent in enumerate(header.parents):
        positions[joint] = header.offsets[joint] + (positions[parent] if parent >= 0 else 0.0)
    return positions


# ----------------------------------------------------------------------------- rig mapping


@dataclasses.dataclass(frozen=True)
class RigMap:
    """Which file joint drives each SMPL joint.

    Attributes:
      rig: the rig recognised (``mixamo``, ``cmu``, ``lafan1``, ``hips_leftupleg``, ``bandai_namco``,
        ``xsens_mvn``, ``xsens_mvn_legacy``, ``smpl``, ``keywords``), with ``+joint_map`` when a
        joint map changed it.
      sources: (24,) the file joint index of each SMPL joint; None where the file has none (the
        SMPL joint then keeps its parent's rotation: a hand, a toe, a collar the rig lacks).
      ignored: the file joints no SMPL joint takes (fingers, eyes, helper bones).
    """

    rig: str
    sources: tuple[int | None, ...]
    ignored: tuple[str, ...]

    def mapped(self, header: BvhHeader) -> dict[str, str]:
        """SMPL joint name -> file joint name, for the SMPL joints that have one."""
        return {SMPL_JOINT_NAMES[j]: header.names[s] for j, s in enumerate(self.sources) if s is not None}


def _find(table: dict, normal: list[str], role: str) -> int | None:
    for candidate in table.get(role, ()):
        if candidate in normal:
            return normal.index(candidate)
    return None


def _side_and_rest(name: str) -> tuple[str | None, str]:
    """('left'|'right'|None, the name without the side marker) of a normalised name."""
    for side in ("left", "right"):
        if side in name:
            return side, name.replace(side, "", 1)
    for side, letter in (("left", "l"), ("right", "r")):
        if name.startswith(letter) and len(name) > 3:
            return side, name[1:]
        if name.endswith(letter) and len(name) > 3:
            return side, name[:-1]
    return None, name


def _keyword_roles(normal: list[str]) -> dict[str, int]:
    """Role -> joint from keywords (`_KEYWORDS`), for a rig no built-in map names."""
    roles: dict[str, int] = {}
    for index, name in enumerate(normal):
        side, rest = _side_and_rest(name)
        if side is None:
            for role, words in (("pelvis", ("hips", "pelvis", "hip")), ("neck", ("neck",)), ("head", ("head",))):
                if role not in roles and any(rest.startswith(word) for word in words):
                    roles[role] = index
            continue
        for part, words in _KEYWORDS:
            if any(rest.startswith(word) or rest.endswith(word) for word in words):
                roles.setdefault(f"{side}_{part}", index)
                break
    return roles


def _ancestors(header: BvhHeader, joint: int) -> list[int]:
    chain = []
    while joint >= 0:
        chain.append(joint)
        joint = header.parents[joint]
    return chain


def map_rig(header: BvhHeader, joint_map: dict[str, str] | None = None) -> RigMap:
    """The SMPL joint -> file joint map of a BVH rig (see the module doc); MocapError without legs.

    Args:
      joint_map: SMPL joint name (``left_hip``, ... `SMPL_JOINT_NAMES`) -> file joint name, as
        written in the file (a namespace may be left out); overrides the built-in map.
    """
    path = header.path
    normal = [normalize_name(name) for name in header.names]
    present = set(normal)
    rig, roles = "keywords", _keyword_roles(normal)
    for name, recognise, table in RIGS:
        if recognise(present, header.names):
            found = {role: _find(table, normal, role) for role in table}
            if all(found.get(role) is not None for role in REQUIRED):
                rig, roles = name, {role: index for role, index in found.items() if index is not None}
                break
    if joint_map:
        rig += "+joint_map"
        for smpl_name, file_name in joint_map.items():
            if smpl_name not in SMPL_JOINT_NAMES:
                raise MocapError(
                    path, f"joint_map: {smpl_name!r} is not a SMPL joint (one of {', '.join(SMPL_JOINT_NAMES)})"
                )
            wanted = normalize_name(str(file_name))
            if wanted not in normal:
                raise MocapError(path, f"joint_map: {smpl_name} -> {file_name!r}: no such joint in the file")
            roles[smpl_name] = normal.index(wanted)
    missing = [role for role in REQUIRED if role not in roles]
    if missing:
        raise MocapError(
            path,
            f"not a humanoid rig: no {', '.join(missing)} found among its joints "
            f"({', '.join(header.names[:12])}{' ...' if len(header.names) > 12 else ''}); "
            "give a joint_map in the dataset spec",
        )
    legs = [roles[f"{side}_{part}"] for side in ("left", "right") for part in ("hip", "knee", "ankle")]
    if len(set(legs)) != len(legs):
        raise MocapError(path, "not a humanoid rig: its leg joints are not distinct")
    for side in ("left", "right"):  # a leg must be a chain: hip above knee above ankle
        hip, knee, ankle = (roles[f"{side}_{part}"] for part in ("hip", "knee", "ankle"))
        if hip not in _ancestors(header, knee) or knee not in _ancestors(header, ankle):
            raise MocapError(
                path,
                f"not a humanoid rig: the {side} leg ({header.names[hip]}, "
                f"{header.names[knee]}, {header.names[ankle]}) is not one chain",
            )
    sources: list[int | None] = [roles.get(name) for name in SMPL_JOINT_NAMES]
    for smpl_joint, spine in zip(_SPINE_JOINTS, _spine_sources(header, roles)):
        if SMPL_JOINT_NAMES[smpl_joint] not in (joint_map or {}):
            sources[smpl_joint] = spine
    used = {s for s in sources if s is not None}
    ignored = tuple(
        name
        for index, name in enumerate(header.names)
        if index not in used and not _between(header, index, used, roles)
    )
    return RigMap(rig=rig, sources=tuple(sources), ignored=ignored)


_SPINE_JOINTS = (3, 6, 9)


def _chest(header: BvhHeader, roles: dict[str, int]) -> int:
    """The joint the neck and arms hang from: the neck's parent, else the arms' common ancestor."""
    if "neck" in roles:
        return header.parents[roles["neck"]]
    arms = [roles[role] for role in ("left_collar", "left_shoulder", "right_collar", "right_shoulder") if role in roles]
    if len(arms) >= 2:
        common = set(_ancestors(header, arms[0]))
        for arm in arms[1:]:
            common &= set(_ancestors(header, arm))
        return max(common, key=lambda joint: len(_ancestors(header, joint)))
    if "head" in roles:
        return header.parents[roles["head"]]
    return roles["pelvis"]


def _spine_sources(header: BvhHeader, roles: dict[str, int]) -> tuple[int, int, int]:
    """SMPL spine1..3 from the joints between the pelvis and the chest (both chest and chain)."""
    pelvis, chest = roles["pelvis"], _chest(header, roles)
    chain = _ancestors(header, chest)
    if pelvis not in chain:  # a chest not above the pelvis: the rig is laid out otherwise
        return pelvis, pelvis, pelvis
    spine = list(reversed(chain[: chain.index(pelvis)]))  # pelvis's child ... chest
    if not spine:
        return pelvis, pelvis, pelvis
    if len(spine) == 1:
        return spine[0], spine[0], spine[0]
    middle = spine[len(spine) // 2] if len(spine) >= 3 else spine[-1]
    return spine[0], middle, spine[-1]


def _between(header: BvhHeader, joint: int, used: set[int], roles: dict[str, int]) -> bool:
    """Whether `joint` lies on a mapped chain (a spine joint skipped, CMU's LHipJoint): counted
    as carried, not ignored."""
    below = [u for u in used if joint in _ancestors(header, u) and u != joint]
    return bool(below) and joint in _ancestors(header, max(below, key=lambda u: len(_ancestors(header, u))))


# ----------------------------------------------------------------------------- units and axes


def detect_units(leg_length: float) -> tuple[str, float]:
    """(unit name, metres per file unit) that puts a leg length (file units) nearest an adult's;
    ``("unknown", metres per unit making it ADULT_LEG_M)`` when no unit gives a human leg."""
    if not leg_length > 0:
        raise ValueError("leg length must be > 0")
    name = min(UNITS, key=lambda unit: abs(math.log(leg_length * UNITS[unit] / ADULT_LEG_M)))
    if LEG_RANGE_M[0] <= leg_length * UNITS[name] <= LEG_RANGE_M[1]:
        return name, UNITS[name]
    return "unknown", ADULT_LEG_M / leg_length


def _up_turn(axis: str) -> np.ndarray:
    """The rotation taking the file's up axis (``y``, ``-z`` ...) onto +z, keeping y-up files as
    AIST++ and CMU are turned (`Y_UP_TO_Z_UP`)."""
    up = np.array(UP_AXES[axis], dtype=np.float64)
    if axis == "y":
        return np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    if axis == "-z":
        return np.diag([1.0, -1.0, -1.0])
    return _least_rotation(up, np.array([0.0, 0.0, 1.0]))


def detect_up_axis(positions: np.ndarray, head: int, feet: tuple[int, int]) -> str:
    """The file axis the head is above the feet along, on average over the frames."""
    direction = (positions[:, head] - positions[:, list(feet)].mean(axis=1)).mean(axis=0)
    axis = int(np.argmax(np.abs(direction)))
    return ("-" if direction[axis] < 0 else "") + "xyz"[axis]


# ----------------------------------------------------------------------------- retargeting

# The child whose direction each SMPL joint's bone has (as the CMU reader), and leaf directions.
_SMPL_MAIN_CHILD = {
    1: 4,
    2: 5,
    3: 6,
    4: 7,
    5: 8,
    6: 9,
    7: 10,
    8: 11,
    9: 12,
    12: 15,
    13: 16,
    14: 17,
    16: 18,
    17: 19,
    18: 20,
    19: 21,
    20: 22,
    21: 23,
}
_SMPL_LEAF_DIRECTION = {
    10: (0.0, 0.0, 1.0),
    11: (0.0, 0.0, 1.0),
    15: (0.0, 1.0, 0.0),
    22: (1.0, 0.0, 0.0),
    23: (-1.0, 0.0, 0.0),
}


def _least_rotation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations of least angle taking unit vectors `source` onto `target` (..., 3)."""
    source = source / np.linalg.norm(source, axis=-1, keepdims=True)
    target = target / np.linalg.norm(target, axis=-1, keepdims=True)
    axis = np.cross(source, target)
    sine = np.linalg.norm(axis, axis=-1, keepdims=True)
    cosine = np.sum(source * target, axis=-1, keepdims=True)
    helper = np.where(np.abs(source[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    flip_axis = np.cross(source, helper)
    degenerate = sine < 1e-9
    axis = np.where(degenerate, flip_axis, axis)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.where(degenerate, np.where(cosine > 0, 0.0, np.pi), np.arctan2(sine, cosine))
    return Rotation.from_rotvec((axis * angle).reshape(-1, 3)).as_matrix().reshape(source.shape[:-1] + (3, 3))


def _bone_direction(header: BvhHeader, joint: int, smpl_joint: int, sources, rotations, positions) -> np.ndarray:
    """(T, 3) the file's direction of the bone that SMPL joint `smpl_joint` (at file `joint`) turns."""
    child = _SMPL_MAIN_CHILD.get(smpl_joint)
    if child is not None and sources[child] is not None and sources[child] != joint:
        direction = positions[:, sources[child]] - positions[:, joint]
        if np.linalg.norm(direction, axis=-1).min() > 1e-9:
            return direction
    tips = [header.offsets[c] for c in header.children(joint)] + list(header.end_sites.get(joint, []))
    tips = [tip for tip in tips if np.linalg.norm(tip) > 1e-9]
    if tips:
        return np.einsum("tij,j->ti", rotations[:, joint], np.mean(tips, axis=0))
    parent = header.parents[joint]
    return positions[:, joint] - positions[:, max(parent, 0)]


def _body_frames(left: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(T, 3, 3) frames with columns (left, up, forward) from left and up vectors (T, 3)."""
    up = up / np.linalg.norm(up, axis=-1, keepdims=True)
    left = left - np.sum(left * up, axis=-1, keepdims=True) * up
    left = left / np.linalg.norm(left, axis=-1, keepdims=True)
    return np.stack([left, up, np.cross(left, up)], axis=-1)


def _snap(frame: np.ndarray, tolerance_deg: float = 20.0) -> np.ndarray:
    """A frame snapped to the nearest signed axis permutation when it is within `tolerance_deg`."""
    snapped = np.zeros((3, 3))
    for column in range(3):
        axis = int(np.argmax(np.abs(frame[:, column])))
        snapped[axis, column] = np.sign(frame[axis, column])
    if abs(np.linalg.det(snapped) - 1.0) < 1e-6:
        angle = np.degrees(np.linalg.norm(Rotation.from_matrix(snapped.T @ frame).as_rotvec()))
        if angle < tolerance_deg:
            return snapped
    return frame


def _mean_rotation(matrices: np.ndarray) -> np.ndarray:
    """The chordal mean of rotation matrices (N, 3, 3)."""
    u, _, vt = np.linalg.svd(matrices.sum(axis=0))
    if np.linalg.det(u @ vt) < 0:
        u[:, -1] = -u[:, -1]
    return u @ vt


def _leg_length(positions: np.ndarray, sources) -> float:
    """Hip -> knee -> ankle length, averaged over the legs, from (J, 3) positions (any pose)."""
    return float(
        np.mean(
            [
                np.linalg.norm(positions[sources[k]] - positions[sources[h]])
                + np.linalg.norm(positions[sources[a]] - positions[sources[k]])
                for h, k, a in ((1, 4, 7), (2, 5, 8))
            ]
        )
    )


@dataclasses.dataclass(frozen=True)
class BvhRetarget:
    """What reading a BVH onto SMPL did (for the per-clip report).

    Attributes:
      rig: the recognised rig (`RigMap.rig`).
      mapped: SMPL joint -> file joint.
      ignored: file joints no SMPL joint takes.
      units: ``m``, ``cm``, ``mm``, ``inch``, ``cmu`` (inches / 0.45), ``unknown`` or ``given``.
      metres_per_unit: the file unit in metres.
      up_axis: the file's up axis (``y``, ``z``, ``-z`` ...).
      leg_length_m: the performer's hip -> knee -> ankle length.
      height_m: ankle to head joint along the up axis in the rest pose, metres (about 0.85 of
        the standing height); None when the rest pose does not stand.
      scale: SMPL leg length / the performer's: how much the root trajectory was scaled.
      rest_pose_stands: whether the alignments came from the rest pose (else from the motion).
    """

    rig: str
    mapped: dict
    ignored: tuple[str, ...]
    units: str
    metres_per_unit: float
    up_axis: str
    leg_length_m: float
    height_m: float | None
    scale: float
    rest_pose_stands: bool

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["ignored"] = list(self.ignored)
        for key in ("metres_per_unit", "leg_length_m", "height_m", "scale"):
            data[key] = None if data[key] is None else round(float(data[key]), 5)
        return data


def retarget_bvh(
    header: BvhHeader,
    values: np.ndarray,
    joint_map: dict | None = None,
    units: str | float | None = None,
    up_axis: str | None = None,
    skeleton: Skeleton | None = None,
) -> tuple[np.ndarray, np.ndarray, BvhRetarget]:
    """BVH frames -> SMPL axis-angle rotations (T, 24, 3), pelvis positions (T, 3) in metres, Z-up,
    and what was done (`BvhRetarget`).

    Args:
      joint_map: SMPL joint name -> file joint name, over the built-in map (`map_rig`).
      units: ``m``, ``cm``, ``mm``, ``inch``, ``cmu`` or metres per file unit; None/``auto``: detected.
      up_axis: ``y``, ``z``, ``x`` (or ``-y`` ...); None/``auto``: detected.
      skeleton: the SMPL skeleton retargeted onto (default the neutral one).
    """
    path = header.path
    skeleton = neutral_skeleton() if skeleton is None else skeleton
    rig = map_rig(header, joint_map)
    sources = rig.sources
    rotations, positions = forward_kinematics(header, values)
    rest = rest_positions(header)

    leg = _leg_length(rest, sources)
    if not leg > 1e-9:
        raise MocapError(path, "the leg bones have zero length")
    if units in (None, "auto"):
        unit_name, metres = detect_units(leg)
    elif isinstance(units, (int, float)) and not isinstance(units, bool):
        unit_name, metres = "given", float(units)
    elif units in UNITS:
        unit_name, metres = str(units), UNITS[units]
    else:
        raise MocapError(path, f"units must be one of {', '.join(UNITS)}, auto or a number, got {units!r}")
    pelvis = sources[0]
    extent = np.ptp(positions[:, pelvis], axis=0).max() * metres
    if not extent < MAX_EXTENT_M:
        raise MocapError(path, f"the pelvis travels {extent:.3g} m in the clip (absurd values)")

    head = next(sources[j] for j in (15, 12, 9) if sources[j] is not None)
    if up_axis in (None, "auto"):
        up_axis = detect_up_axis(positions, head, (sources[7], sources[8]))
    elif up_axis not in UP_AXES:
        raise MocapError(path, f"up_axis must be one of {', '.join(UP_AXES)} or auto, got {up_axis!r}")
    up = np.array(UP_AXES[up_axis], dtype=np.float64)
    turn = _up_turn(up_axis)

    def unit(v):
        return v / np.linalg.norm(v)

    legs_down = min(float(unit(rest[sources[a]] - rest[sources[h]]) @ -up) for h, a in ((1, 7), (2, 8)))
    spine_up = float(unit(rest[head] - rest[pelvis]) @ up)
    stands = legs_down > STANDING_COS and spine_up > STANDING_COS

    smpl_rest = skeleton.rest_joints_smpl
    frames = values.shape[0]
    if stands:  # one frame: the rest pose, where every global rotation is the identity
        body = _snap(_body_frames((rest[sources[1]] - rest[sources[2]])[None], up[None])[0])[None]
        eye = np.eye(3)[None, None].repeat(len(header.names), axis=1)
        sample_rot, sample_pos = eye, rest[None]
    else:  # the posed frames (a spread of them)
        picks = np.unique(np.linspace(0, frames - 1, min(frames, ALIGN_FRAMES)).astype(int))
        sample_rot, sample_pos = rotations[picks], positions[picks]
        body = _body_frames(
            sample_pos[:, sources[1]] - sample_pos[:, sources[2]], sample_pos[:, head] - sample_pos[:, pelvis]
        )

    world = np.empty((frames, NUM_JOINTS, 3, 3))
    for j in range(NUM_JOINTS):
        source = sources[j]
        if source is None:
            world[:, j] = world[:, SMPL_PARENTS[j]]
            continue
        if j == 0:
            wanted = body
        else:
            smpl_direction = (
                smpl_rest[_SMPL_MAIN_CHILD[j]] - smpl_rest[j]
                if j in _SMPL_MAIN_CHILD
                else np.array(_SMPL_LEAF_DIRECTION[j])
            )
            file_direction = _bone_direction(header, source, j, sources, sample_rot, sample_pos)
            along = np.einsum("tij,j->ti", body, smpl_direction)
            wanted = _least_rotation(along, file_direction) @ body
        alignment = _mean_rotation(np.swapaxes(sample_rot[:, source], -1, -2) @ wanted)
        world[:, j] = turn @ rotations[:, source] @ alignment

    local = np.empty_like(world)
    local[:, 0] = world[:, 0]
    parents = np.array(SMPL_PARENTS[1:])
    local[:, 1:] = np.swapaxes(world[:, parents], -1, -2) @ world[:, 1:]
    rotvecs = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(frames, NUM_JOINTS, 3)

    smpl_leg = float(
        np.mean(
            [
                np.linalg.norm(smpl_rest[k] - smpl_rest[h]) + np.linalg.norm(smpl_rest[a] - smpl_rest[k])
                for h, k, a in ((1, 4, 7), (2, 5, 8))
            ]
        )
    )
    scale = smpl_leg / (leg * metres)
    root_position = positions[:, pelvis] @ turn.T * metres * scale
    height = float(np.ptp(rest[[sources[7], sources[8], head]] @ up)) * metres if stands else None
    info = BvhRetarget(
        rig=rig.rig,
        mapped=rig.mapped(header),
        ignored=rig.ignored,
        units=unit_name,
        metres_per_unit=metres,
        up_axis=up_axis,
        leg_length_m=leg * metres,
        height_m=height,
        scale=scale,
        rest_pose_stands=stands,
    )
    return rotvecs, root_position, info


# ----------------------------------------------------------------------------- entry points


@dataclasses.dataclass(frozen=True)
class BvhOptions:
    """A dataset spec's BVH settings: `joint_map` (SMPL joint -> file joint), `units`, `up_axis`."""

    joint_map: dict | None = None
    units: str | float | None = None
    up_axis: str | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> BvhOptions:
        data = dict(data or {})
        return cls(joint_map=data.get("joint_map"), units=data.get("units"), up_axis=data.get("up_axis"))


def load_bvh_with_report(
    path: str | os.PathLike, options: BvhOptions | dict | None = None, skeleton: Skeleton | None = None
) -> tuple[Motion, BvhRetarget]:
    """(`Motion` on the SMPL skeleton, what retargeting did) of the BVH file at `path`."""
    options = options if isinstance(options, BvhOptions) else BvhOptions.from_dict(options)
    header, values = read_bvh(path)
    rotations, root, info = retarget_bvh(header, values, options.joint_map, options.units, options.up_axis, skeleton)
    motion = Motion(rotations=rotations, root_position=root, fps=header.fps, source=str(path), format="bvh")
    return motion, info


def load_bvh(path: str | os.PathLike, options: BvhOptions | dict | None = None) -> Motion:
    """Reads a BVH file and retargets it onto the neutral SMPL skeleton (see the module doc)."""
    return load_bvh_with_report(path, options)[0]


def inspect_bvh(path: str | os.PathLike) -> dict:
    """Format, frames, fps and duration from the header only (the frame lines are not read)."""
    header = read_bvh_header(path)
    return {
        "format": "bvh",
        "frames": header.frames,
        "fps": header.fps,
        "duration_s": (header.frames - 1) / header.fps,
        "joints": NUM_JOINTS,
    }


# ----------------------------------------------------------------------------- writing

# Bones past the leaves in the written file (End Sites), metres: toes forward, head up, hands out.
_END_SITES = {
    10: (0.0, 0.0, 0.05),
    11: (0.0, 0.0, 0.05),
    15: (0.0, 0.12, 0.0),
    22: (0.08, 0.0, 0.0),
    23: (-0.08, 0.0, 0.0),
}
WRITE_UNITS = {"m": 1.0, "cm": 100.0}
_Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def write_bvh(
    path: str | os.PathLike,
    rotations: np.ndarray,
    root_position: np.ndarray,
    fps: float,
    skeleton: Skeleton | None = None,
    units: str = "m",
) -> Path:
    """Writes SMPL motion as a BVH on the SMPL skeleton: Y-up, facing +z at rest (T-pose),
    joints named as `SMPL_JOINT_NAMES`, channels ``Zrotation Xrotation Yrotation`` (the root also
    ``Xposition Yposition Zposition``), lengths in `units` (``m`` or ``cm``).

    Args:
      rotations: (T, 24, 3) SMPL axis-angle (joint 0 into the Z-up world, as `Motion`).
      root_position: (T, 3) pelvis positions, Z-up world, metres.
    """
    if units not in WRITE_UNITS:
        raise ValueError(f"units must be one of {', '.join(WRITE_UNITS)}, got {units!r}")
    scale = WRITE_UNITS[units]
    skeleton = neutral_skeleton() if skeleton is None else skeleton
    offsets = skeleton.offsets_smpl * scale
    frames = rotations.shape[0]
    local = Rotation.from_rotvec(rotations.reshape(-1, 3)).as_matrix().reshape(frames, NUM_JOINTS, 3, 3)
    local[:, 0] = _Z_UP_TO_Y_UP @ local[:, 0]  # the SMPL body frame is the file's rest frame
    euler = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("ZXY", degrees=True).reshape(frames, NUM_JOINTS, 3)
    root = root_position @ _Z_UP_TO_Y_UP.T * scale

    children = {j: [c for c in range(NUM_JOINTS) if SMPL_PARENTS[c] == j] for j in range(NUM_JOINTS)}
    lines = ["HIERARCHY"]

    def joint(j: int, depth: int) -> None:
        pad = "\t" * depth
        lines.append(f"{pad}{'ROOT' if j == 0 else 'JOINT'} {SMPL_JOINT_NAMES[j]}")
        lines.append(f"{pad}{{")
        offset = (0.0, 0.0, 0.0) if j == 0 else offsets[j]
        lines.append(f"{pad}\tOFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}")
        lines.append(
            f"{pad}\tCHANNELS {'6 Xposition Yposition Zposition' if j == 0 else '3'} Zrotation Xrotation Yrotation"
        )
        for child in children[j]:
            joint(child, depth + 1)
        if not children[j]:
            tip = np.array(_END_SITES[j]) * scale
            lines.extend(
                [
                    f"{pad}\tEnd Site",
                    f"{pad}\t{{",
                    f"{pad}\t\tOFFSET {tip[0]:.6f} {tip[1]:.6f} {tip[2]:.6f}",
                    f"{pad}\t}}",
                ]
            )
        lines.append(f"{pad}}}")

    order: list[int] = []

    def visit(j: int) -> None:  # the file's channel order: depth first, as the hierarchy is written
        order.append(j)
        for child in children[j]:
            visit(child)

    joint(0, 0)
    visit(0)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {1.0 / fps:.8f}"]
    table = np.concatenate([root, euler[:, order].reshape(frames, -1)], axis=1)
    body = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in table)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + body + "\n", encoding="ascii")
    return path
