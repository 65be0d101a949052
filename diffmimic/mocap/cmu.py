"""CMU raw mocap (Acclaim ASF skeleton + AMC motion) retargeted onto the SMPL skeleton.

Reading
-------
The ASF file gives the units (``length`` scale, ``angle`` deg/rad), the root (dof ``order``,
``axis`` order, ``orientation``) and, per bone, a unit ``direction`` and a ``length`` in the
rest pose, the bone's local frame as ``axis`` angles with their order, and its ``dof``s; the
``hierarchy`` links the bones. The AMC file gives, per frame, one line per moving bone with its
dof values (``:DEGREES`` / ``:RADIANS``; without either the ASF angle unit applies). Lines may
end in CRLF; ``#`` lines and blank lines are skipped. Anything malformed raises
:class:`~diffmimic.mocap.motion.MocapError` naming the file and the problem.

Forward kinematics (standard Acclaim semantics, CMU Y-up frame)
----------------------------------------------------------------
A bone's axis frame is ``C = euler(axis order, axis angles)`` and its rotation in a frame is
``M = euler(dof order, dof values)``, where ``euler("XYZ", (a, b, c)) = Rz(c) Ry(b) Rx(a)`` (the
first listed axis is applied first; for CMU's ``rx ry rz`` dofs this is ``M = Rz Ry Rx``). The
global rotation is ``L = L_parent C M C^-1`` (the root's is ``C_root M_root C_root^-1`` from its
``orientation``), and a bone runs from its parent's end to
``end = start + L (direction * length)``. Lengths become metres as
``value / length_scale * 0.0254`` (CMU lengths are inches / 0.45); the root translation too.
The AMC root translation is taken as absolute (the ASF root ``position``, zero in CMU, is not
added). The result is turned into the Z-up world with ``Y_UP_TO_Z_UP``.

Retargeting onto SMPL
---------------------
In the rest pose the CMU frame is x to the subject's left, y up, z forward -- the SMPL body
frame -- and both skeletons stand in a T-pose. Each SMPL joint ``j`` takes the global rotation
of one CMU bone ``b(j)`` (``left_hip <- lfemur``, ``left_knee <- ltibia``, ``left_ankle <-
lfoot``, ``left_foot <- ltoes``, ``spine1/2/3 <- lowerback/upperback/thorax``, ``neck <-
lowerneck``, ``head <- head``, ``left_collar <- lclavicle``, ``left_shoulder <- lhumerus``,
``left_elbow <- lradius``, ``left_wrist <- lwrist``, ``left_hand <- lhand``, right alike; CMU
``l`` bones are the subject's left, +x in its rest pose) times a constant alignment::

    G_j = Y_UP_TO_Z_UP  L_b(j)  A_j,     A_j = shortest rotation taking s_j onto d_b(j),

where ``s_j`` is the SMPL rest direction from joint ``j`` to its main child (neutral skeleton,
SMPL body frame; a fixed forward / up / outward direction for the feet, head and hands) and
``d_b`` the CMU rest direction of the bone. So every SMPL bone points exactly where its CMU
bone points in every frame, and the SMPL rest pose is recovered when the CMU skeleton is at
rest (up to the small rest-pose differences the alignments absorb). The pelvis takes the root
rotation unchanged (``A_0 = I``): ``G_0 = Y_UP_TO_Z_UP L_root`` maps the SMPL body frame into
the Z-up world, like AMASS root orientations. Local SMPL rotations are
``R_j = G_parent^T G_j``, stored as axis-angle. The pelvis trajectory is the CMU root
trajectory (metres, Z-up) scaled by the ratio of the neutral SMPL leg length (hip->knee->ankle)
to the CMU leg length (femur + tibia), both averaged over the two legs.
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
    Y_UP_TO_Z_UP,
    Skeleton,
    neutral_skeleton,
)
from diffmimic.mocap.motion import MocapError, Motion

INCH = 0.0254
DEFAULT_FPS = 120.0
ROTATION_DOFS = ("rx", "ry", "rz")
_ROOT_DOFS = ("TX", "TY", "TZ", "RX", "RY", "RZ")
_LIMIT = re.compile(r"\(\s*([^\s()]+)\s+([^\s()]+)\s*\)")

# SMPL joint -> candidate CMU bones (the first one the ASF has is used).
SMPL_FROM_CMU: dict[int, tuple[str, ...]] = {
    0: ("root",),
    1: ("lfemur",),
    2: ("rfemur",),
    3: ("lowerback",),
    4: ("ltibia",),
    5: ("rtibia",),
    6: ("upperback", "lowerback"),
    7: ("lfoot",),
    8: ("rfoot",),
    9: ("thorax", "upperback"),
    10: ("ltoes", "lfoot"),
    11: ("rtoes", "rfoot"),
    12: ("lowerneck", "upperneck"),
    13: ("lclavicle",),
    14: ("rclavicle",),
    15: ("head", "upperneck"),
    16: ("lhumerus",),
    17: ("rhumerus",),
    18: ("lradius",),
    19: ("rradius",),
    20: ("lwrist", "lhand", "lradius"),
    21: ("rwrist", "rhand", "rradius"),
    22: ("lhand", "lwrist", "lradius"),
    23: ("rhand", "rwrist", "rradius"),
}
# The child whose direction each SMPL joint's bone is aligned with.
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
# Leaf joints: a fixed rest direction in the SMPL body frame (x left, y up, z forward).
_SMPL_LEAF_DIRECTION = {
    10: (0.0, 0.0, 1.0),
    11: (0.0, 0.0, 1.0),
    15: (0.0, 1.0, 0.0),
    22: (1.0, 0.0, 0.0),
    23: (-1.0, 0.0, 0.0),
}


@dataclasses.dataclass(frozen=True)
class AsfBone:
    """One ASF bone, as written in the file (angles converted to radians)."""

    name: str
    id: int | None
    direction: np.ndarray  # (3,) unit rest direction, CMU Y-up frame
    length: float  # file length units
    axis: np.ndarray  # (3,) axis angles in radians, in the order of `axis_order`
    axis_order: str  # e.g. "XYZ"
    dof: tuple[str, ...]  # e.g. ("rx", "ry", "rz")
    limits: tuple[tuple[float, float], ...]


@dataclasses.dataclass(frozen=True)
class AsfSkeleton:
    """A parsed ASF skeleton. `bones` lists the bones parents-first; `parents` maps each to its parent."""

    path: str
    mass: float
    length_scale: float
    angle_unit: str  # "deg" or "rad"
    root_order: tuple[str, ...]
    root_axis: str
    root_position: np.ndarray
    root_orientation: np.ndarray  # radians
    bones: dict[str, AsfBone]
    parents: dict[str, str]

    def to_metres(self, value):
        """File length units -> metres."""
        return np.asarray(value, dtype=np.float64) / self.length_scale * INCH

    def num_values(self, name: str) -> int:
        """How many numbers an AMC line for `name` carries."""
        return len(self.root_order) if name == "root" else len(self.bones[name].dof)


@dataclasses.dataclass(frozen=True)
class AmcMotion:
    """Parsed AMC frames: `values[bone]` is (T, number of dofs), raw file numbers."""

    path: str
    values: dict[str, np.ndarray]
    degrees: bool

    @property
    def num_frames(self) -> int:
        return int(self.values["root"].shape[0])


@dataclasses.dataclass(frozen=True)
class CmuPose:
    """CMU forward kinematics in the Z-up world, metres.

    `names[0]` is ``root``. `rotations` (T, B, 3, 3): each bone's global rotation ``L`` (maps rest
    world vectors to posed world vectors). `starts`/`ends` (T, B, 3): each bone's end points.
    """

    names: tuple[str, ...]
    rotations: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def index(self, name: str) -> int:
        return self.names.index(name)


# ----------------------------------------------------------------------------- parsing helpers


def _read_lines(path: Path) -> list[str]:
    try:
        with open(path, encoding="latin-1") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        raise MocapError(path, "file not found") from None
    except OSError as error:
        raise MocapError(path, f"cannot read the file: {error}", transient=True) from None


def _content(lines: list[str]):
    """(line number, stripped line) for lines that are neither blank nor comments."""
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def _floats(path, number: int, tokens: list[str], what: str) -> list[float]:
    try:
        values = [float(token) for token in tokens]
    except ValueError:
        raise MocapError(path, f"line {number}: non-numeric value in {what}: {' '.join(tokens)!r}") from None
    if not all(math.isfinite(value) for value in values):
        raise MocapError(path, f"line {number}: NaN or infinite value in {what}")
    return values


def _euler(order: str, angles: np.ndarray) -> np.ndarray:
    """Rotation matrices applying the axes of `order` (e.g. "XYZ") first to last; angles in radians."""
    angles = np.asarray(angles, dtype=np.float64)
    if not order:
        return np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    return (
        Rotation.from_euler(order.lower(), angles.reshape(-1, len(order)))
        .as_matrix()
        .reshape(angles.shape[:-1] + (3, 3))
    )


# ----------------------------------------------------------------------------- ASF


def _parse_units(path, number, tokens, units):
    if len(tokens) != 2:
        raise MocapError(path, f"line {number}: bad units line {' '.join(tokens)!r}")
    key, value = tokens[0].lower(), tokens[1]
    if key == "angle":
        if value.lower() not in ("deg", "rad"):
            raise MocapError(path, f"line {number}: angle unit must be deg or rad, got {value!r}")
        units["angle"] = value.lower()
    elif key in ("mass", "length"):
        (units[key],) = _floats(path, number, [value], f"units {key}")
        if units[key] <= 0:
            raise MocapError(path, f"line {number}: units {key} must be > 0, got {value}")


def _check_order(path, number, order: str) -> str:
    order = order.upper()
    if len(order) != 3 or sorted(order) != ["X", "Y", "Z"]:
        raise MocapError(path, f"line {number}: rotation order must be a permutation of XYZ, got {order!r}")
    return order


def _parse_root(path, number, tokens, root):
    key, rest = tokens[0].lower(), tokens[1:]
    if key == "order":
        order = tuple(token.upper() for token in rest)
        if any(dof not in _ROOT_DOFS for dof in order) or len(set(order)) != len(order):
            raise MocapError(path, f"line {number}: bad root dof order {' '.join(rest)!r}")
        root["order"] = order
    elif key == "axis":
        root["axis"] = _check_order(path, number, rest[0] if rest else "")
    elif key in ("position", "orientation"):
        if len(rest) != 3:
            raise MocapError(path, f"line {number}: root {key} needs 3 values, got {len(rest)}")
        root[key] = np.array(_floats(path, number, rest, f"root {key}"))


def _parse_bone_line(path, number, tokens, bone):
    key, rest = tokens[0].lower(), tokens[1:]
    if key == "limits" or key.startswith("("):  # a limits line, or one continuing it
        if key != "limits" and "limits" not in bone:
            raise MocapError(path, f"line {number}: limits continuation without a limits line")
        text = " ".join(rest if key == "limits" else tokens)
        bone.setdefault("limits", []).extend((number, pair) for pair in _LIMIT.findall(text))
    elif key == "name":
        if len(rest) != 1:
            raise MocapError(path, f"line {number}: bad bone name line")
        bone["name"] = rest[0]
    elif key == "id":
        bone["id"] = int(_floats(path, number, rest[:1], "bone id")[0]) if rest else None
    elif key == "direction":
        if len(rest) != 3:
            raise MocapError(path, f"line {number}: bone direction needs 3 values, got {len(rest)}")
        bone["direction"] = np.array(_floats(path, number, rest, "bone direction"))
    elif key == "length":
        if len(rest) != 1:
            raise MocapError(path, f"line {number}: bone length needs 1 value, got {len(rest)}")
        bone["length"] = _floats(path, number, rest, "bone length")[0]
    elif key == "axis":
        if len(rest) != 4:
            raise MocapError(path, f"line {number}: bone axis needs 3 angles and an order")
        bone["axis"] = np.array(_floats(path, number, rest[:3], "bone axis"))
        bone["axis_order"] = _check_order(path, number, rest[3])
    elif key == "dof":
        dofs = tuple(token.lower() for token in rest)
        bad = [dof for dof in dofs if dof not in ROTATION_DOFS]
        if bad or len(set(dofs)) != len(dofs):
            raise MocapError(
                path,
                f"line {number}: unsupported or repeated bone dof(s) {' '.join(rest)!r} "
                "(only rx, ry, rz are supported)",
            )
        bone["dof"] = dofs


def _finish_bone(path, number, raw, angle_scale) -> AsfBone:
    for key in ("name", "direction", "length"):
        if key not in raw:
            raise MocapError(path, f"bone ending at line {number} has no {key}")
    norm = float(np.linalg.norm(raw["direction"]))
    if norm < 1e-9 or raw["length"] < 0:
        raise MocapError(path, f"bone {raw['name']!r}: zero direction or negative length")
    dof = raw.get("dof", ())
    limits = []
    for line, (low, high) in raw.get("limits", []):
        try:  # limits may be +-inf
            limits.append((float(low), float(high)))
        except ValueError:
            raise MocapError(path, f"line {line}: non-numeric limits ({low} {high})") from None
    if limits and len(limits) != len(dof):
        raise MocapError(path, f"bone {raw['name']!r}: {len(limits)} limits for {len(dof)} dofs")
    return AsfBone(
        name=raw["name"],
        id=raw.get("id"),
        direction=raw["direction"] / norm,
        length=float(raw["length"]),
        axis=raw.get("axis", np.zeros(3)) * angle_scale,
        axis_order=raw.get("axis_order", "XYZ"),
        dof=dof,
        limits=tuple(limits),
    )


def _order_hierarchy(path, bones: dict, children: dict) -> dict[str, str]:
    """bone -> parent, parents first; every bone must hang from the root exactly once."""
    parents: dict[str, str] = {}
    queue = ["root"]
    while queue:
        parent = queue.pop(0)
        for child in children.get(parent, ()):
            if child in parents or child == "root":
                raise MocapError(path, f"hierarchy: bone {child!r} has more than one parent or forms a cycle")
            parents[child] = parent
            queue.append(child)
    for name in children:
        if name != "root" and name not in bones:
            raise MocapError(path, f"hierarchy names unknown bone {name!r}")
        for child in children[name]:
            if child not in bones:
                raise MocapError(path, f"hierarchy names unknown bone {child!r}")
    missing = [name for name in bones if name not in parents]
    if missing:
        raise MocapError(path, f"bone(s) missing from the hierarchy (not reachable from root): {', '.join(missing)}")
    return parents


def parse_asf(path: str | os.PathLike) -> AsfSkeleton:
    """Reads an ASF skeleton file."""
    path = Path(path)
    units = {"mass": 1.0, "length": 1.0, "angle": "deg"}
    root: dict = {}
    raw_bones: list[tuple[int, dict]] = []
    children: dict[str, list[str]] = {}
    section, bone, in_block = None, None, False
    for number, line in _content(_read_lines(path)):
        tokens = line.split()
        if line.startswith(":"):
            section = tokens[0][1:].lower()
            if bone is not None:
                raise MocapError(path, f"line {number}: bone block not closed with 'end'")
            in_block = False
            continue
        if section == "units":
            _parse_units(path, number, tokens, units)
        elif section == "root":
            _parse_root(path, number, tokens, root)
        elif section == "bonedata":
            if tokens[0].lower() == "begin":
                bone = {}
            elif tokens[0].lower() == "end":
                if bone is None:
                    raise MocapError(path, f"line {number}: 'end' without 'begin'")
                raw_bones.append((number, bone))
                bone = None
            elif bone is None:
                raise MocapError(path, f"line {number}: bone data outside a begin/end block")
            else:
                _parse_bone_line(path, number, tokens, bone)
        elif section == "hierarchy":
            if tokens[0].lower() in ("begin", "end"):
                in_block = tokens[0].lower() == "begin"
            elif in_block:
                children.setdefault(tokens[0], []).extend(tokens[1:])
    if bone is not None:
        raise MocapError(path, "file ends inside a bone block")
    if "order" not in root:
        raise MocapError(path, "no :root section with a dof order")
    angle_scale = math.pi / 180.0 if units["angle"] == "deg" else 1.0
    bones: dict[str, AsfBone] = {}
    for number, raw in raw_bones:
        parsed = _finish_bone(path, number, raw, angle_scale)
        if parsed.name in bones or parsed.name == "root":
            raise MocapError(path, f"bone {parsed.name!r} is defined twice")
        bones[parsed.name] = parsed
    parents = _order_hierarchy(path, bones, children)
    return AsfSkeleton(
        path=str(path),
        mass=units["mass"],
        length_scale=units["length"],
        angle_unit=units["angle"],
        root_order=root["order"],
        root_axis=root.get("axis", "XYZ"),
        root_position=root.get("position", np.zeros(3)),
        root_orientation=root.get("orientation", np.zeros(3)) * angle_scale,
        bones={name: bones[name] for name in parents},
        parents=parents,
    )


# ----------------------------------------------------------------------------- AMC


def _amc_frames(path, lines, asf: AsfSkeleton):
    """[(frame number, first line, {bone: values})] and the :DEGREES/:RADIANS flag (None if absent)."""
    frames: list[tuple[int, int, dict]] = []
    degrees = None
    for number, line in _content(lines):
        if line.startswith(":"):
            keyword = line.split()[0].upper()
            degrees = True if keyword == ":DEGREES" else False if keyword == ":RADIANS" else degrees
            continue
        tokens = line.split()
        if len(tokens) == 1 and tokens[0].isdigit():
            frame = int(tokens[0])
            if frames and frame != frames[-1][0] + 1:
                raise MocapError(path, f"line {number}: frame {frame} follows frame {frames[-1][0]}")
            frames.append((frame, number, {}))
            continue
        name = tokens[0]
        if not frames:
            raise MocapError(path, f"line {number}: bone data before the first frame number")
        where = f"line {number} (frame {frames[-1][0]})"
        if name != "root" and name not in asf.bones:
            raise MocapError(path, f"{where}: unknown bone {name!r} (not in {Path(asf.path).name})")
        expected = asf.num_values(name)
        if len(tokens) - 1 != expected:
            raise MocapError(path, f"{where}: bone {name!r} has {len(tokens) - 1} values, expected {expected}")
        values = frames[-1][2]
        if name in values:
            raise MocapError(path, f"{where}: bone {name!r} appears twice in the frame")
        values[name] = _floats(path, number, tokens[1:], f"bone {name!r} of frame {frames[-1][0]}")
    return frames, degrees


def parse_amc(path: str | os.PathLike, asf: AsfSkeleton) -> AmcMotion:
    """Reads an AMC motion file against its ASF skeleton; every moving bone must be in every frame."""
    path = Path(path)
    frames, degrees = _amc_frames(path, _read_lines(path), asf)
    if len(frames) < 2:
        raise MocapError(path, f"a clip needs at least 2 frames, got {len(frames)}")
    moving = ["root"] + [name for name, bone in asf.bones.items() if bone.dof]
    for frame, number, values in frames:
        missing = [name for name in moving if name not in values]
        if missing:
            raise MocapError(
                path, f"frame {frame} (line {number}) is incomplete or truncated: missing {', '.join(missing)}"
            )
    values = {
        name: np.array([f[2][name] for f in frames], dtype=np.float64).reshape(len(frames), -1) for name in moving
    }
    return AmcMotion(path=str(path), values=values, degrees=(asf.angle_unit == "deg") if degrees is None else degrees)


# ----------------------------------------------------------------------------- kinematics


def _root_transform(asf: AsfSkeleton, amc: AmcMotion) -> tuple[np.ndarray, np.ndarray]:
    """Root global rotation (T, 3, 3) and position (T, 3) in metres, CMU Y-up frame."""
    raw = amc.values["root"]
    angle_scale = math.pi / 180.0 if amc.degrees else 1.0
    position = np.zeros((raw.shape[0], 3))
    rot_axes, rot_columns = "", []
    for column, dof in enumerate(asf.root_order):
        if dof[0] == "T":
            position[:, "XYZ".index(dof[1])] = asf.to_metres(raw[:, column])
        else:
            rot_axes += dof[1]
            rot_columns.append(column)
    motion = _euler(rot_axes, raw[:, rot_columns] * angle_scale)
    frame = _euler(asf.root_axis, asf.root_orientation)
    return frame @ motion @ frame.T, position


def cmu_forward_kinematics(asf: AsfSkeleton, amc: AmcMotion) -> CmuPose:
    """Global bone rotations and end points for every frame, Z-up world, metres."""
    root_rotation, root_position = _root_transform(asf, amc)
    angle_scale = math.pi / 180.0 if amc.degrees else 1.0
    names = ("root",) + tuple(asf.bones)
    frames = amc.num_frames
    rotations = np.empty((frames, len(names), 3, 3))
    starts = np.empty((frames, len(names), 3))
    ends = np.empty((frames, len(names), 3))
    rotations[:, 0], starts[:, 0], ends[:, 0] = root_rotation, root_position, root_position
    index = {name: i for i, name in enumerate(names)}
    for i, name in enumerate(names[1:], 1):
        bone = asf.bones[name]
        parent = index[asf.parents[name]]
        axis = _euler(bone.axis_order, bone.axis)
        local = _euler("".join(d[1] for d in bone.dof), amc.values[name] * angle_scale) if bone.dof else np.eye(3)
        rotations[:, i] = rotations[:, parent] @ (axis @ local @ axis.T)
        starts[:, i] = ends[:, parent]
        ends[:, i] = starts[:, i] + rotations[:, i] @ (bone.direction * asf.to_metres(bone.length))
    to_z = Y_UP_TO_Z_UP
    return CmuPose(names=names, rotations=to_z @ rotations @ to_z.T, starts=starts @ to_z.T, ends=ends @ to_z.T)


# ----------------------------------------------------------------------------- retargeting


def _shortest_rotation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The rotation matrix of least angle taking unit vector `source` onto unit vector `target`."""
    source = source / np.linalg.norm(source)
    target = target / np.linalg.norm(target)
    axis = np.cross(source, target)
    sine, cosine = np.linalg.norm(axis), float(np.dot(source, target))
    if sine < 1e-12:
        if cosine > 0:
            return np.eye(3)
        helper = np.eye(3)[np.argmin(np.abs(source))]
        axis = np.cross(source, helper)
        sine = np.linalg.norm(axis)
    return Rotation.from_rotvec(axis / sine * math.atan2(sine, cosine)).as_matrix()


def smpl_bone_sources(asf: AsfSkeleton) -> tuple[str, ...]:
    """The CMU bone (or ``root``) that drives each SMPL joint, SMPL joint order."""
    chosen = []
    for joint in range(NUM_JOINTS):
        found = [name for name in SMPL_FROM_CMU[joint] if name == "root" or name in asf.bones]
        if not found:
            raise MocapError(
                asf.path,
                f"no bone for SMPL joint {SMPL_JOINT_NAMES[joint]!r} (wanted one of {', '.join(SMPL_FROM_CMU[joint])})",
            )
        chosen.append(found[0])
    return tuple(chosen)


def rest_alignments(asf: AsfSkeleton, skeleton: Skeleton, sources: tuple[str, ...]) -> np.ndarray:
    """(24, 3, 3) constant rotations A_j taking each SMPL rest bone direction onto its CMU one."""
    rest = skeleton.rest_joints_smpl
    alignments = np.empty((NUM_JOINTS, 3, 3))
    alignments[0] = np.eye(3)
    for joint in range(1, NUM_JOINTS):
        if joint in _SMPL_MAIN_CHILD:
            smpl_direction = rest[_SMPL_MAIN_CHILD[joint]] - rest[joint]
        else:
            smpl_direction = np.array(_SMPL_LEAF_DIRECTION[joint])
        alignments[joint] = _shortest_rotation(smpl_direction, asf.bones[sources[joint]].direction)
    return alignments


def leg_length_ratio(asf: AsfSkeleton, skeleton: Skeleton) -> float:
    """SMPL leg length (hip->knee->ankle) over the CMU one (femur + tibia), both averaged over legs."""
    rest = skeleton.rest_joints_smpl
    smpl = np.mean(
        [
            np.linalg.norm(rest[knee] - rest[hip]) + np.linalg.norm(rest[ankle] - rest[knee])
            for hip, knee, ankle in ((1, 4, 7), (2, 5, 8))
        ]
    )
    try:
        cmu = np.mean(
            [asf.to_metres(asf.bones[f"{side}femur"].length + asf.bones[f"{side}tibia"].length) for side in "lr"]
        )
    except KeyError as error:
        raise MocapError(asf.path, f"no bone {error.args[0]!r} to measure the leg length") from None
    if cmu <= 0:
        raise MocapError(asf.path, "leg bones have zero length")
    return float(smpl / cmu)


def retarget_to_smpl(
    asf: AsfSkeleton, pose: CmuPose, skeleton: Skeleton | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """CMU pose -> SMPL axis-angle rotations (T, 24, 3) and pelvis positions (T, 3), Z-up world."""
    skeleton = neutral_skeleton() if skeleton is None else skeleton
    sources = smpl_bone_sources(asf)
    alignments = rest_alignments(asf, skeleton, sources)
    bone_rotations = pose.rotations[:, [pose.index(name) for name in sources]]
    # G_j = Y2Z L_b A_j = (Y2Z L_b Y2Z^T) Y2Z A_j, and pose.rotations are already Y2Z L Y2Z^T.
    world = bone_rotations @ (Y_UP_TO_Z_UP @ alignments)
    parents = np.array(SMPL_PARENTS[1:])
    local = np.empty_like(world)
    local[:, 0] = world[:, 0]
    local[:, 1:] = np.swapaxes(world[:, parents], -1, -2) @ world[:, 1:]
    frames = world.shape[0]
    rotvecs = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(frames, NUM_JOINTS, 3)
    root_position = pose.starts[:, 0] * leg_length_ratio(asf, skeleton)
    return rotvecs, root_position


# ----------------------------------------------------------------------------- public entry points


def find_asf(amc_path: str | os.PathLike, asf_path: str | os.PathLike | None = None) -> Path:
    """The skeleton file of an AMC clip: `asf_path`, or ``<subject>.asf`` beside it (11_01.amc -> 11.asf)."""
    amc_path = Path(amc_path)
    if asf_path is None:
        subject = amc_path.name.split("_", 1)[0] if "_" in amc_path.name else amc_path.stem
        asf_path = amc_path.with_name(f"{subject}.asf")
    asf_path = Path(asf_path)
    if not asf_path.is_file():
        raise MocapError(amc_path, f"skeleton file {asf_path} not found")
    return asf_path


def load_cmu(
    amc_path: str | os.PathLike, asf_path: str | os.PathLike | None = None, fps: float = DEFAULT_FPS
) -> Motion:
    """Reads a CMU ASF/AMC clip and retargets it onto the neutral SMPL skeleton (see module doc).

    Args:
      amc_path: the AMC motion file.
      asf_path: its ASF skeleton; by default ``<subject>.asf`` beside the AMC.
      fps: the capture rate (AMC files do not record it; CMU captured at 120 fps).
    """
    asf = parse_asf(find_asf(amc_path, asf_path))
    amc = parse_amc(amc_path, asf)
    rotations, root_position = retarget_to_smpl(asf, cmu_forward_kinematics(asf, amc))
    return Motion(rotations=rotations, root_position=root_position, fps=fps, source=str(amc_path), format="cmu")


def inspect_cmu(
    amc_path: str | os.PathLike, asf_path: str | os.PathLike | None = None, fps: float = DEFAULT_FPS
) -> dict:
    """Frame count and duration of a CMU clip without parsing or retargeting it (counts frame-number lines)."""
    find_asf(amc_path, asf_path)
    frames = sum(1 for line in _read_lines(Path(amc_path)) if line.strip().isdigit())
    if frames < 2:
        raise MocapError(amc_path, f"a clip needs at least 2 frames, got {frames}")
    if not (math.isfinite(fps) and fps > 0):
        raise MocapError(amc_path, f"frame rate must be > 0, got {fps}")
    return {
        "format": "cmu",
        "frames": frames,
        "fps": float(fps),
        "duration_s": (frames - 1) / fps,
        "joints": NUM_JOINTS,
    }
