"""Human body data for a faithful character: segment masses, joint ranges and joint strength.

Everything is per body of the character (`skeleton.BODY_NAMES`) and, for joints, per hinge axis
of the body's rest frame (x forward, y to the body's left, z up; `constants.HINGE_ORDER`). Left
side values are written out; the right side mirrors them across the sagittal plane (rotations
about x and z change sign, about y they do not: `mirror_range`).

Sources (numbers restated from the publications, rounded; see each table):
- Segment masses: P. de Leva, "Adjustments to Zatsiorsky-Seluyanov's segment inertia
  parameters", J. Biomechanics 29(9):1223-1230, 1996, Table 4: mass in % of body mass for
  females and males; the neutral body takes their mean.
- Joint ranges: the normal active ranges of motion of the American Academy of Orthopaedic
  Surgeons ("Joint Motion: Method of Measuring and Recording", 1965; restated by Greene & Heckman,
  1994), widened where SMPL fits of real mocap are known to exceed them (the fit puts part of the
  hip flexion into the lowest spine joint, knee twist into the knee); the widening was checked
  against the 11 ACCAD dev clips (per-hinge extremes printed by
  `python -m diffmimic.character ranges DIR`).
- Joint strength: peak voluntary joint torques of healthy adults: lower limb from Anderson,
  Madigan & Nussbaum, "Maximum voluntary joint torque as a function of joint angle and angular
  velocity", J. Biomechanics 40(14):3105-3113, 2007 (hip extension ~200-250 N m, knee extension
  ~200-250, ankle plantarflexion ~150-200 in young men); trunk from isokinetic lumbar studies
  (extension ~200-300 N m, rotation ~100); neck ~30-50 N m (Vasavada, Li & Delp, Spine 23(4),
  1998); upper limb from isometric strength norms (shoulder flexion/abduction ~50-90 N m, elbow
  flexion ~60-80, forearm rotation ~10, wrist ~10-15). A simulated human has no stronger joints.
"""

from __future__ import annotations

import numpy as np

from diffmimic.character.constants import HINGE_ORDER
from diffmimic.character.skeleton import BODY_NAMES

# Segment mass, % of body mass (de Leva 1996, Table 4; neutral = mean of female and male).
DE_LEVA_PERCENT: dict[str, float] = {
    "head_neck": 0.5 * (6.68 + 6.94),
    "trunk": 0.5 * (42.57 + 43.46),
    "upper_arm": 0.5 * (2.55 + 2.71),
    "forearm": 0.5 * (1.38 + 1.62),
    "hand": 0.5 * (0.56 + 0.61),
    "thigh": 0.5 * (14.78 + 14.16),
    "shank": 0.5 * (4.81 + 4.33),
    "foot": 0.5 * (1.29 + 1.37),
}

# The de Leva segment each character body belongs to (per side for the limbs). A segment of
# several bodies (trunk: pelvis to chest and both clavicles; foot: ankle and toes; hand: wrist
# and hand; head and neck) shares one density.
BODY_SEGMENT: dict[str, str] = {
    "Pelvis": "trunk",
    "Torso": "trunk",
    "Spine": "trunk",
    "Chest": "trunk",
    "Neck": "head_neck",
    "Head": "head_neck",
    **{
        f"{side}_{body}": segment
        for side in "LR"
        for body, segment in (
            ("Thorax", "trunk"),
            ("Shoulder", "upper_arm"),
            ("Elbow", "forearm"),
            ("Wrist", "hand"),
            ("Hand", "hand"),
            ("Hip", "thigh"),
            ("Knee", "shank"),
            ("Ankle", "foot"),
            ("Toe", "foot"),
        )
    },
}


def segment_key(body: str) -> str:
    """The segment a body's mass is pooled in: limb segments per side ("L_thigh"), trunk and
    head/neck once."""
    segment = BODY_SEGMENT[body]
    return f"{body[0]}_{segment}" if body[:2] in ("L_", "R_") and segment not in ("trunk",) else segment


def segment_percent(key: str) -> float:
    return DE_LEVA_PERCENT[key.split("_", 1)[1] if key[:2] in ("L_", "R_") else key]


# Hinge ranges in degrees, (low, high) per axis of the left body (and the unpaired trunk/head).
HINGE_RANGE_DEG: dict[str, dict[str, tuple[float, float]]] = {
    # Hip: y flexion is negative (AAOS flexion 120, extension 30; widened to 130 / 45),
    # x abduction positive for the left leg (45, adduction 30), z rotation (45 each way).
    "L_Hip": {"y": (-130.0, 45.0), "x": (-35.0, 50.0), "z": (-50.0, 50.0)},
    # Knee: y flexion positive (AAOS 0-135; widened to -20..150 for SMPL fits' hyperextension),
    # x varus/valgus and z tibial rotation, which SMPL fits use for knee twist.
    "L_Knee": {"y": (-20.0, 150.0), "x": (-25.0, 25.0), "z": (-45.0, 45.0)},
    # Ankle: y plantarflexion positive (50), dorsiflexion negative (20 unloaded, ~45 in a loaded
    # lunge or crouch); x eversion positive for the left foot (20), inversion 35; z foot turn.
    "L_Ankle": {"y": (-45.0, 55.0), "x": (-40.0, 25.0), "z": (-35.0, 35.0)},
    # Toes (metatarsophalangeal): extension (toes up, negative y) 70, flexion 45.
    "L_Toe": {"y": (-70.0, 45.0), "x": (-15.0, 15.0), "z": (-15.0, 15.0)},
    # Spine, three joints: flexion forward positive. Whole thoracolumbar spine: flexion ~90,
    # extension ~30, lateral bending 35 and rotation 45 each way; the lowest joint of an SMPL fit
    # also carries part of the hip flexion (96 degrees in the dev set's crouch).
    "Torso": {"y": (-35.0, 100.0), "x": (-35.0, 35.0), "z": (-40.0, 40.0)},
    "Spine": {"y": (-35.0, 60.0), "x": (-35.0, 35.0), "z": (-40.0, 40.0)},
    "Chest": {"y": (-35.0, 60.0), "x": (-35.0, 35.0), "z": (-40.0, 40.0)},
    # Neck and head share the cervical spine: flexion 50, extension 60, lateral 45, rotation 80.
    "Neck": {"y": (-50.0, 50.0), "x": (-40.0, 40.0), "z": (-60.0, 60.0)},
    "Head": {"y": (-50.0, 50.0), "x": (-40.0, 40.0), "z": (-60.0, 60.0)},
    # Clavicle (sternoclavicular): elevation/depression, protraction/retraction, rotation.
    "L_Thorax": {"x": (-40.0, 40.0), "y": (-45.0, 45.0), "z": (-45.0, 45.0)},
    # Shoulder, arm along +y at rest: x raises it (abduction above the T-pose) or lowers it to
    # the side (-90 and past it across the body); y is the humeral rotation (70 in, 90 out);
    # z swings it forward (negative, horizontal flexion 130) or back (45).
    "L_Shoulder": {"x": (-120.0, 120.0), "y": (-100.0, 100.0), "z": (-135.0, 80.0)},
    # Elbow: flexion is negative z for the left arm (AAOS 150, 10 of hyperextension); y forearm
    # rotation (pronation/supination 80 each); x, which an elbow lacks, small for fit noise.
    "L_Elbow": {"x": (-25.0, 25.0), "y": (-90.0, 90.0), "z": (-155.0, 10.0)},
    # Wrist: flexion/extension 80/70, deviation 20/30, with the rest of forearm rotation.
    "L_Wrist": {"x": (-80.0, 80.0), "y": (-90.0, 90.0), "z": (-80.0, 80.0)},
    # Hand (SMPL's knuckle joint): small.
    "L_Hand": {"x": (-30.0, 30.0), "y": (-30.0, 30.0), "z": (-30.0, 30.0)},
}

# Peak joint torque, N m, per axis of each body (left; the right is the same).
TORQUE_LIMIT_NM: dict[str, dict[str, float]] = {
    "L_Hip": {"y": 250.0, "x": 150.0, "z": 100.0},
    "L_Knee": {"y": 250.0, "x": 60.0, "z": 60.0},
    "L_Ankle": {"y": 180.0, "x": 60.0, "z": 40.0},
    "L_Toe": {"y": 20.0, "x": 10.0, "z": 10.0},
    "Torso": {"y": 250.0, "x": 200.0, "z": 120.0},
    "Spine": {"y": 250.0, "x": 200.0, "z": 120.0},
    "Chest": {"y": 250.0, "x": 200.0, "z": 120.0},
    "Neck": {"y": 50.0, "x": 50.0, "z": 40.0},
    "Head": {"y": 50.0, "x": 50.0, "z": 40.0},
    "L_Thorax": {"x": 80.0, "y": 80.0, "z": 80.0},
    "L_Shoulder": {"x": 90.0, "y": 50.0, "z": 90.0},
    "L_Elbow": {"x": 40.0, "y": 15.0, "z": 80.0},
    "L_Wrist": {"x": 15.0, "y": 15.0, "z": 15.0},
    "L_Hand": {"x": 5.0, "y": 5.0, "z": 5.0},
}

# Torque-limit groups the evaluation reports on (peak torque against the limit).
JOINT_GROUPS: dict[str, tuple[str, ...]] = {
    "hips": ("L_Hip", "R_Hip"),
    "knees": ("L_Knee", "R_Knee"),
    "ankles": ("L_Ankle", "R_Ankle"),
    "toes": ("L_Toe", "R_Toe"),
    "spine": ("Torso", "Spine", "Chest"),
    "neck": ("Neck", "Head"),
    "clavicles": ("L_Thorax", "R_Thorax"),
    "shoulders": ("L_Shoulder", "R_Shoulder"),
    "elbows": ("L_Elbow", "R_Elbow"),
    "wrists": ("L_Wrist", "R_Wrist", "L_Hand", "R_Hand"),
}


def _left(body: str) -> str:
    return "L_" + body[2:] if body.startswith("R_") else body


def mirror_range(axis: str, low_high: tuple[float, float]) -> tuple[float, float]:
    """The right-side range of a left-side one: the sagittal mirror negates rotations about x
    and z (forward and up axes), not about y."""
    low, high = low_high
    return (-high, -low) if axis in ("x", "z") else (low, high)


def hinge_range_deg(body: str, axis: str) -> tuple[float, float]:
    """The range of `body`'s hinge about `axis`, degrees."""
    left = HINGE_RANGE_DEG[_left(body)][axis]
    return mirror_range(axis, left) if body.startswith("R_") else left


def hinge_ranges_rad() -> tuple[np.ndarray, np.ndarray]:
    """(low, high) (69,) radians: every hinge's range in the order of the character's hinges
    (`qpos[7:]`: bodies in `BODY_NAMES` order, each body's axes in `HINGE_ORDER`)."""
    ranges = [hinge_range_deg(body, axis) for body in BODY_NAMES[1:] for axis in HINGE_ORDER[body]]
    low, high = np.radians(np.asarray(ranges, np.float64)).T
    return low, high


def torque_limit_nm(body: str, axis: str) -> float:
    return TORQUE_LIMIT_NM[_left(body)][axis]
