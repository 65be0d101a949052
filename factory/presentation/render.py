"""Rendering trajectories: the simulated character beside its reference.

- `write_html(scene, path)`: one self-contained HTML file (the viewer's JavaScript and the
  trajectory are inside it; no network) with play/pause, scrubbing, speed, orbit and zoom, the
  reference beside / overlaid / hidden, and the per-frame pose error with segment boundaries and
  the fall marked.
- `write_video(scene, path)`: a GIF (Pillow) or MP4 (H.264 through the ffmpeg binary shipped by
  `imageio-ffmpeg`) drawn with the same camera and shapes.

A `Scene` comes from a policy rollout or a saved trajectory / composition (`scene_from_trajectory`).
The drawn shapes are the character's own collision geometry (capsules, spheres and foot boxes of
the MJCF), placed by the simulated and reference body poses.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import os
from importlib import resources
from pathlib import Path

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from diffmimic import atomic
from diffmimic.character.character import make_character
from diffmimic.character.mjcf import CharacterConfig
from diffmimic.geometry import heading_yaw
from diffmimic.rollout import Trajectory
from factory.library import character_config_from_dict

SIMULATED_COLOUR = "#3b7dd8"
REFERENCE_COLOUR = "#e0a040"
FELL_COLOUR = "#c0504d"
REFERENCE_BESIDE_M = 1.0
FOV_DEG = 40.0
VIDEO_FORMATS = (".gif", ".mp4")
FORMATS = (".html",) + VIDEO_FORMATS + (".png",)


@dataclasses.dataclass(frozen=True)
class Geom:
    """One drawn shape in its body's frame: a capsule (`a`, `b`, `radius`; a sphere has a == b)
    or a box (`center` and three half-extent `axes`)."""

    body: int
    kind: str
    radius: float = 0.0
    a: tuple = (0.0, 0.0, 0.0)
    b: tuple = (0.0, 0.0, 0.0)
    center: tuple = (0.0, 0.0, 0.0)
    axes: tuple = ()

    def to_dict(self) -> dict:
        if self.kind == "box":
            return {"body": self.body, "kind": "box", "center": list(self.center), "axes": [list(a) for a in self.axes]}
        return {"body": self.body, "kind": self.kind, "radius": self.radius, "a": list(self.a), "b": list(self.b)}


def _quat_matrix(wxyz) -> np.ndarray:
    w, x, y, z = (float(v) for v in wxyz)
    return Rotation.from_quat([x, y, z, w]).as_matrix()


def character_geoms(character_config: CharacterConfig = CharacterConfig()) -> tuple[Geom, ...]:
    """The character's collision shapes (every geom but the floor), in body frames; body index i
    is Brax link i (MuJoCo body i + 1)."""
    model = make_character(config=character_config).sys.mj_model
    geoms = []
    for i in range(model.ngeom):
        body = int(model.geom_bodyid[i]) - 1
        if body < 0:
            continue
        kind, size = int(model.geom_type[i]), model.geom_size[i]
        pos, rot = np.asarray(model.geom_pos[i], float), _quat_matrix(model.geom_quat[i])
        r = lambda v: tuple(round(float(c), 5) for c in v)
        if kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
            half = rot[:, 2] * float(size[1])
            geoms.append(Geom(body, "capsule", radius=float(size[0]), a=r(pos - half), b=r(pos + half)))
        elif kind == mujoco.mjtGeom.mjGEOM_SPHERE:
            geoms.append(Geom(body, "sphere", radius=float(size[0]), a=r(pos), b=r(pos)))
        elif kind == mujoco.mjtGeom.mjGEOM_BOX:
            geoms.append(Geom(body, "box", center=r(pos), axes=tuple(r(rot[:, k] * float(size[k])) for k in range(3))))
        else:
            raise ValueError(f"cannot draw geom {i} of type {kind}")
    return tuple(geoms)


@dataclasses.dataclass(frozen=True)
class Scene:
    """What a renderer draws.

    body_pos/body_rot: (T, 24, 3)/(T, 24, 4 wxyz) simulated; reference_pos/reference_rot: the
    reference at the same frames; pose_error_m: (T - 1,); fell_at_step: the first step counted as
    a fall (None: never); segments: dicts with name, start_step, end_step (one for a single policy).
    """

    title: str
    subtitle: str
    fps: float
    body_pos: np.ndarray
    body_rot: np.ndarray
    reference_pos: np.ndarray
    reference_rot: np.ndarray
    pose_error_m: np.ndarray
    fell_at_step: int | None
    segments: tuple
    geoms: tuple[Geom, ...]
    target_pose_error_m: float | None = None

    @property
    def frames(self) -> int:
        return int(self.body_pos.shape[0])

    def camera(self) -> dict:
        """Initial camera: facing the character from its front-right, the reference on its left."""
        yaw = float(heading_yaw(self.body_rot[0, 0]))
        return {"yaw": yaw - 0.6, "pitch": 0.28, "distance": 4.2, "fov_deg": FOV_DEG}

    def reference_offset(self) -> list[float]:
        """The reference is drawn this far to the character's left (at its initial heading)."""
        yaw = float(heading_yaw(self.body_rot[0, 0]))
        return [-np.sin(yaw) * REFERENCE_BESIDE_M, np.cos(yaw) * REFERENCE_BESIDE_M, 0.0]


def scene_from_trajectory(
    trajectory,
    title: str,
    subtitle: str = "",
    segments=None,
    character_config: CharacterConfig = CharacterConfig(),
    target_pose_error_m: float | None = None,
) -> Scene:
    """A scene from a `diffmimic.rollout.Trajectory` (a policy rollout or a composition)."""
    fell = np.asarray(trajectory.fell, bool)
    steps = trajectory.steps
    if not segments:
        segments = ({"index": 1, "name": title, "start_step": 0, "end_step": steps},)
    segments = tuple({k: s[k] for k in ("index", "name", "start_step", "end_step") if k in s} for s in segments)
    return Scene(
        title=title,
        subtitle=subtitle,
        fps=float(trajectory.fps),
        body_pos=np.asarray(trajectory.body_pos, np.float32),
        body_rot=np.asarray(trajectory.body_rot, np.float32),
        reference_pos=np.asarray(trajectory.reference_body_pos, np.float32),
        reference_rot=np.asarray(trajectory.reference_body_rot, np.float32),
        pose_error_m=np.asarray(trajectory.pose_error_m, np.float32),
        fell_at_step=int(np.argmax(fell)) if fell.any() else None,
        segments=segments,
        geoms=character_geoms(character_config),
        target_pose_error_m=target_pose_error_m,
    )


def _packed(pos: np.ndarray, rot: np.ndarray) -> str:
    data = np.concatenate([pos, rot], axis=-1).astype("<f4")
    return base64.b64encode(data.tobytes()).decode("ascii")


def scene_json(scene: Scene) -> dict:
    """The scene as the viewer's JSON."""
    error = [round(float(e), 5) if np.isfinite(e) else None for e in scene.pose_error_m]
    return {
        "title": scene.title,
        "subtitle": scene.subtitle,
        "fps": scene.fps,
        "frames": scene.frames,
        "bodies": int(scene.body_pos.shape[1]),
        "sim": _packed(scene.body_pos, scene.body_rot),
        "ref": _packed(scene.reference_pos, scene.reference_rot),
        "pose_error_m": error,
        "fell_at_step": scene.fell_at_step,
        "segments": list(scene.segments),
        "geoms": [g.to_dict() for g in scene.geoms],
        "camera": scene.camera(),
        "reference_offset": scene.reference_offset(),
        "target_pose_error_m": scene.target_pose_error_m,
        "colours": {"simulated": SIMULATED_COLOUR, "reference": REFERENCE_COLOUR},
    }


def _asset(name: str) -> str:
    return resources.files("factory.presentation").joinpath("viewer", name).read_text(encoding="utf-8")


def html_page(scene: Scene) -> str:
    """The self-contained viewer page for `scene`."""
    data = json.dumps(scene_json(scene), separators=(",", ":")).replace("</", "<\\/")
    page = _asset("viewer.html")
    page = page.replace("__TITLE__", html.escape(scene.title))
    page = page.replace("__SCENE__", data)
    return page.replace("__VIEWER_JS__", _asset("viewer.js"))


def _atomic_write(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_with(path, write, suffix=f".tmp{path.suffix}")  # writers that read the extension


def write_html(scene: Scene, path: str | os.PathLike) -> Path:
    page = html_page(scene)
    return _atomic_write(Path(path), lambda tmp: tmp.write_text(page, encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# Videos: the viewer's drawing in numpy + Pillow.


class _Camera:
    def __init__(self, target, yaw: float, pitch: float, distance: float, width: int, height: int):
        target = np.asarray(target, float)
        cp = np.cos(pitch)
        self.eye = target + distance * np.array([cp * np.cos(yaw), cp * np.sin(yaw), np.sin(pitch)])
        f = target - self.eye
        self.f = f / np.linalg.norm(f)
        r = np.cross(self.f, [0.0, 0.0, 1.0])
        self.r = r / np.linalg.norm(r)
        self.u = np.cross(self.r, self.f)
        self.focal = height / (2 * np.tan(np.radians(FOV_DEG) / 2))
        self.cx, self.cy = width / 2, height / 2

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        d = np.asarray(points, float) - self.eye
        return np.stack([d @ self.r, d @ self.u, d @ self.f], -1)

    def project(self, cam: np.ndarray) -> np.ndarray:
        return np.stack(
            [self.cx + self.focal * cam[..., 0] / cam[..., 2], self.cy - self.focal * cam[..., 1] / cam[..., 2]], -1
        )


_NEAR = 0.05


def _clip_polygon(points: np.ndarray) -> list:
    out = []
    for i in range(len(points)):
        a, b = points[i], points[(i + 1) % len(points)]
        if a[2] > _NEAR:
            out.append(a)
        if (a[2] > _NEAR) != (b[2] > _NEAR):
            t = (_NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return out


def _rgb(hex_colour: str, k: float = 1.0) -> tuple[int, int, int]:
    n = int(hex_colour[1:], 16)
    return tuple(int(max(0, min(255, round(((n >> s) & 255) * k)))) for s in (16, 8, 0))


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotates vectors v (..., 3) by quaternions q (..., 4) wxyz."""
    w, xyz = q[..., :1], q[..., 1:]
    t = 2 * np.cross(xyz, v)
    return v + w * t + np.cross(xyz, t)


def _world_shapes(scene: Scene, pos: np.ndarray, rot: np.ndarray, shift) -> list[dict]:
    shapes = []
    for g in scene.geoms:
        p, q = pos[g.body] + shift, rot[g.body]
        if g.kind == "box":
            shapes.append(
                {
                    "kind": "box",
                    "c": p + _rotate(q, np.asarray(g.center)),
                    "axes": _rotate(np.broadcast_to(q, (3, 4)), np.asarray(g.axes)),
                }
            )
        else:
            shapes.append(
                {
                    "kind": "capsule",
                    "a": p + _rotate(q, np.asarray(g.a)),
                    "b": p + _rotate(q, np.asarray(g.b)),
                    "radius": g.radius,
                }
            )
    return shapes


_BOX_FACES = ((0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3))
_LIGHT = np.array([-0.4, -0.3, 0.85]) / np.linalg.norm([-0.4, -0.3, 0.85])


def _draw_frame(scene: Scene, frame: int, width: int, height: int, supersample: int = 2):
    from PIL import Image, ImageDraw, ImageFont  # deferred: only GIF/MP4/PNG renders draw (not the HTML viewer)

    W, H = width * supersample, height * supersample
    image = Image.new("RGB", (W, H), (240, 243, 247))
    draw = ImageDraw.Draw(image, "RGBA")
    camera_setup = scene.camera()
    offset = np.asarray(scene.reference_offset())
    sim_root, ref_root = scene.body_pos[frame, 0], scene.reference_pos[frame, 0] + offset
    target = [(sim_root[0] + ref_root[0]) / 2, (sim_root[1] + ref_root[1]) / 2, 0.9]
    cam = _Camera(target, camera_setup["yaw"], camera_setup["pitch"], camera_setup["distance"], W, H)
    # sky gradient
    for y in range(0, H, 4):
        k = y / H
        draw.rectangle(
            [0, y, W, y + 4], fill=tuple(int(a + (b - a) * k) for a, b in zip((223, 231, 239), (247, 248, 250)))
        )
    # floor
    tile, reach = 0.5, 8.0
    cx, cy = int(np.floor(target[0] / tile)), int(np.floor(target[1] / tile))
    n = int(reach / tile)
    for i in range(-n, n):
        for j in range(-n, n):
            x0, y0 = (cx + i) * tile, (cy + j) * tile
            corners = np.array([[x0, y0, 0], [x0 + tile, y0, 0], [x0 + tile, y0 + tile, 0], [x0, y0 + tile, 0]])
            poly = _clip_polygon(cam.to_camera(corners))
            if len(poly) < 3:
                continue
            fade = max(0.0, 1 - np.hypot(x0 + tile / 2 - target[0], y0 + tile / 2 - target[1]) / reach)
            light = 0.93 if (cx + i + cy + j) & 1 else 0.86
            v = int(round(255 * (light * fade + 0.97 * (1 - fade))))
            draw.polygon([tuple(p) for p in cam.project(np.array(poly))], fill=(v, v, min(255, v + 4)))
    fell = scene.fell_at_step is not None and frame > scene.fell_at_step
    shapes = [
        (s, FELL_COLOUR if fell else SIMULATED_COLOUR, 255)
        for s in _world_shapes(scene, scene.body_pos[frame], scene.body_rot[frame], np.zeros(3))
    ]
    shapes += [
        (s, REFERENCE_COLOUR, 235)
        for s in _world_shapes(scene, scene.reference_pos[frame], scene.reference_rot[frame], offset)
    ]

    def capsule(a, b, radius, colour, alpha, grow=0.0, target=None):
        ca, cb = cam.to_camera(np.stack([a, b]))
        if ca[2] <= _NEAR or cb[2] <= _NEAR:
            return
        (sa, sb) = cam.project(np.stack([ca, cb]))
        w = cam.focal * radius * (1 / ca[2] + 1 / cb[2]) + grow
        fill = colour if alpha is None else colour + (alpha,)
        target = target or draw
        target.line([tuple(sa), tuple(sb)], fill=fill, width=max(1, int(round(w))))
        for s in (sa, sb):
            target.ellipse([s[0] - w / 2, s[1] - w / 2, s[0] + w / 2, s[1] + w / 2], fill=fill)

    # shadows: drawn opaque into a mask, laid down with one alpha (overlaps do not darken)
    shadow = Image.new("L", (W, H), 0)
    shadow_draw = ImageDraw.Draw(shadow)
    for s, _, _ in shapes:
        if s["kind"] == "box":
            a, b, r = s["c"] - s["axes"][0], s["c"] + s["axes"][0], float(np.hypot(*s["axes"][1][:2]))
        else:
            a, b, r = s["a"], s["b"], s["radius"]
        a, b = np.array([a[0], a[1], 0.001]), np.array([b[0], b[1], 0.001])
        capsule(a, b, r, 255, None, target=shadow_draw)
    image.paste((40, 44, 52), mask=shadow.point(lambda v: v * 40 // 255))
    draw = ImageDraw.Draw(image, "RGBA")

    def depth(item):
        s = item[0]
        p = s["c"] if s["kind"] == "box" else (s["a"] + s["b"]) / 2
        return cam.to_camera(p[None])[0, 2]

    for s, colour, alpha in sorted(shapes, key=depth, reverse=True):
        if s["kind"] == "box":
            signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
            corners = s["c"] + signs @ s["axes"]
            cams = cam.to_camera(corners)
            if (cams[:, 2] <= _NEAR).any():
                continue
            screen = cam.project(cams)
            for face in _BOX_FACES:
                p = corners[list(face)]
                normal = np.cross(p[1] - p[0], p[3] - p[0])
                normal /= np.linalg.norm(normal)
                centre = p.mean(0)
                outward = 1.0 if normal @ (centre - s["c"]) > 0 else -1.0
                if (normal @ (cam.eye - centre)) * outward <= 0:
                    continue
                lit = 0.65 + 0.45 * max(0.0, outward * normal @ _LIGHT)
                draw.polygon(
                    [tuple(screen[k]) for k in face],
                    fill=_rgb(colour, lit) + (alpha,),
                    outline=_rgb(colour, 0.55) + (alpha,),
                )
        else:
            capsule(s["a"], s["b"], s["radius"], _rgb(colour, 0.55), alpha, grow=2 * supersample)
            capsule(s["a"], s["b"], s["radius"], _rgb(colour), alpha)
    image = image.resize((width, height), Image.LANCZOS)
    text = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    lines = [scene.title, f"t {frame / scene.fps:5.2f} s"]
    if frame > 0 and np.isfinite(scene.pose_error_m[frame - 1]):
        lines[-1] += f"   pose error {scene.pose_error_m[frame - 1] * 100:4.1f} cm"
    if len(scene.segments) > 1:
        step = min(frame, scene.frames - 2)
        segment = next((s for s in scene.segments if s["start_step"] <= step < s["end_step"]), scene.segments[-1])
        lines.append(f"segment {segment['index']}: {segment['name']}")
    if fell:
        lines.append(f"fell at {scene.fell_at_step / scene.fps:.2f} s")
    for k, line in enumerate(lines):
        text.text((10, 8 + 17 * k), line, fill=(34, 34, 51), font=font)
    text.text(
        (width - 10, height - 22), "simulated (blue)  reference (orange)", fill=(80, 80, 100), font=font, anchor="ra"
    )
    return image


def video_frames(scene: Scene, fps: float, width: int, height: int):
    """Yields Pillow images at `fps` (frames of the scene picked by time)."""
    count = max(1, int(round((scene.frames - 1) / scene.fps * fps)) + 1)
    for k in range(count):
        yield _draw_frame(scene, min(scene.frames - 1, int(round(k * scene.fps / fps))), width, height)


def write_video(
    scene: Scene,
    path: str | os.PathLike,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    progress=None,
) -> Path:
    """Writes a GIF (default 480x270, 15 frames/s) or an MP4 (default 960x540 at the scene's rate)
    by the file suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise ValueError(f"{path}: a video must end in {' or '.join(VIDEO_FORMATS)}")
    fps = fps or (15.0 if suffix == ".gif" else scene.fps)
    width = width or (480 if suffix == ".gif" else 960)
    height = height or (width * 9 // 16)
    frames = video_frames(scene, fps, width, height)
    total = max(1, int(round((scene.frames - 1) / scene.fps * fps)) + 1)

    def counted(images):
        for k, image in enumerate(images, 1):
            if progress is not None and (k % 30 == 0 or k == total):
                progress(k, total)
            yield image

    if suffix == ".gif":

        def write(tmp: Path):
            from PIL import Image  # deferred: as in _draw_frame

            images, palette = [], None
            for image in counted(frames):  # one palette for all frames: GIF then stores only changes
                if palette is None:
                    palette = image.quantize(colors=96, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
                images.append(image.quantize(palette=palette, dither=Image.Dither.NONE))
            images[0].save(
                tmp,
                format="GIF",
                save_all=True,
                append_images=images[1:],
                duration=int(round(1000 / fps)),
                loop=0,
                optimize=False,
            )
    else:

        def write(tmp: Path):
            import imageio_ffmpeg  # deferred: MP4 only (the GPU benchmark's image lacks it)

            writer = imageio_ffmpeg.write_frames(
                str(tmp),
                (width, height),
                fps=fps,
                codec="libx264",
                pix_fmt_out="yuv420p",
                quality=7,
                macro_block_size=8,
                ffmpeg_log_level="error",
                output_params=["-f", "mp4"],
            )
            writer.send(None)
            try:
                for image in counted(frames):
                    writer.send(np.asarray(image.convert("RGB")).tobytes())
            finally:
                writer.close()

    return _atomic_write(path, write)


def write_contact_sheet(
    scene: Scene, path: str | os.PathLike, panels: int = 12, columns: int = 4, width: int = 320
) -> Path:
    """Writes a PNG of `panels` frames evenly spread over the scene (first and last included),
    `columns` to a row, each `width` pixels wide: a long rollout or composition on one page."""
    from PIL import Image  # deferred: as in _draw_frame

    height = width * 9 // 16
    picks = np.linspace(0, scene.frames - 1, max(panels, 1)).round().astype(int)
    rows = -(-len(picks) // columns)
    sheet = Image.new("RGB", (columns * width, rows * height), (255, 255, 255))
    for k, frame in enumerate(picks):
        sheet.paste(
            _draw_frame(scene, int(frame), width, height).convert("RGB"),
            ((k % columns) * width, (k // columns) * height),
        )

    def write(tmp: Path):
        sheet.save(tmp, format="PNG", optimize=True)

    return _atomic_write(Path(path), write)


def render(scene: Scene, path: str | os.PathLike, progress=None) -> Path:
    """Writes `scene` as HTML, GIF, MP4 or a PNG contact sheet by the file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".html":
        return write_html(scene, path)
    if suffix in VIDEO_FORMATS:
        return write_video(scene, path, progress=progress)
    if suffix == ".png":
        return write_contact_sheet(scene, path)
    raise ValueError(f"{path}: unknown output format (use {', '.join(FORMATS)})")


# --------------------------------------------------------------------------------------------
# Scenes from the library and from files.


def scene_for_policy(policy, seconds: float | None = None, start_frame: int = 0) -> tuple[Scene, object]:
    """Rolls a library `Policy` out and returns (scene, trajectory)."""
    trajectory = policy.rollout(seconds=seconds, start_frame=start_frame)
    record, m = policy.record, trajectory.metrics
    fell = f"fell at {m.fell_at_s:.2f} s" if m.fell else "no fall"
    trained = "" if record.pose_error_m is None else f"; training evaluation {record.pose_error_m:.3f} m"
    subtitle = (
        f"{record.status}, {record.attempts} attempt(s){trained}. This rollout: {trajectory.seconds:.1f} s "
        f"from frame {start_frame}, pose error {m.pose_error_m:.3f} m, {fell}."
    )
    scene = scene_from_trajectory(
        trajectory,
        title=f"{record.clip_id} v{record.version}",
        subtitle=subtitle,
        character_config=policy.character_config,
    )
    return scene, trajectory


def scene_from_file(path: str | os.PathLike) -> Scene:
    """A scene from a trajectory .npz written by `factory.library rollout` or `factory.compose`."""
    trajectory, meta = Trajectory.load(path)
    m = trajectory.metrics
    fell = f"fell at {m.fell_at_s:.2f} s" if m.fell else "no fall"
    subtitle = f"{trajectory.seconds:.1f} s, pose error {m.pose_error_m:.3f} m, {fell}"
    if meta.get("kind") == "composition":
        n = meta.get("transitions", 0)
        subtitle += f"; transitions without a fall: {n - meta.get('failed_transitions', 0)}/{n}"
        if meta.get("not_run"):
            subtitle += f"; not run after the fall: {', '.join(meta['not_run'])}"
    return scene_from_trajectory(
        trajectory,
        title=meta.get("title") or Path(path).stem,
        subtitle=subtitle,
        segments=meta.get("segments"),
        character_config=character_config_from_dict(meta.get("character")),
    )
