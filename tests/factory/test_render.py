"""Rendering: the offline HTML viewer (checked in a real headless Chromium), GIF and MP4."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest


@pytest.fixture(scope="module")
def library(tmp_path_factory, trained, put_trained):
    from factory.library import PolicyLibrary

    library = PolicyLibrary(tmp_path_factory.mktemp("render") / "lib", create=True)
    put_trained(library, "sample/squat_poses", trained["squat"], status="converged")
    put_trained(library, "sample/wave_poses", trained["wave"], status="best_effort", attempts=3)
    return library


@pytest.fixture(scope="module")
def rollout(library):
    from factory.presentation.render import scene_for_policy

    policy = library.load_policy("squat_poses")
    scene, trajectory = scene_for_policy(policy, seconds=1.0)
    return scene, trajectory


def _scene_json(page: str) -> dict:
    match = re.search(r'<script id="scene" type="application/json">(.*?)</script>', page, re.S)
    assert match, "no scene data in the page"
    return json.loads(match.group(1))


def _colour_pixels(image, colour: str, tolerance: int = 40) -> int:
    rgb = np.asarray(image.convert("RGB")).astype(int)
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(-1) < tolerance).sum())


def test_character_geoms_are_the_collision_shapes():
    from factory.presentation.render import character_geoms

    geoms = character_geoms()
    assert len(geoms) == 24 and {g.body for g in geoms} == set(range(24))
    kinds = {g.kind for g in geoms}
    assert kinds == {"capsule", "sphere", "box"}
    boxes = [g for g in geoms if g.kind == "box"]
    assert len(boxes) == 4  # the two ankles and two toes
    thigh = next(g for g in geoms if g.body == 1)  # L_Hip: a capsule down to the knee
    assert thigh.kind == "capsule" and np.linalg.norm(np.subtract(thigh.b, thigh.a)) > 0.2


def test_html_is_self_contained_and_holds_the_trajectory(rollout, tmp_path):
    from factory.presentation.render import write_html

    scene, trajectory = rollout
    page_path = write_html(scene, tmp_path / "squat.html")
    page = page_path.read_text()
    # offline: no external scripts, styles, images or fonts
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert "<link" not in page and "@import" not in page
    data = _scene_json(page)
    assert data["frames"] == trajectory.steps + 1 == 31
    sim = np.frombuffer(base64.b64decode(data["sim"]), "<f4").reshape(data["frames"], 24, 7)
    np.testing.assert_allclose(sim[..., :3], trajectory.body_pos, atol=1e-6)
    np.testing.assert_allclose(sim[..., 3:], trajectory.body_rot, atol=1e-6)
    ref = np.frombuffer(base64.b64decode(data["ref"]), "<f4").reshape(data["frames"], 24, 7)
    np.testing.assert_allclose(ref[..., :3], trajectory.reference_body_pos, atol=1e-6)
    assert len(data["pose_error_m"]) == trajectory.steps


def test_viewer_runs_in_a_real_browser(rollout, tmp_path, browser):
    from PIL import Image

    from factory.presentation.render import REFERENCE_COLOUR, SIMULATED_COLOUR, write_html

    scene, _ = rollout
    page = browser(write_html(scene, tmp_path / "squat.html"))
    assert page.console == [], page.console  # no console errors (nor any console output)
    body = re.search(r"<body[^>]*>", page.dom).group(0)
    assert "data-errors" not in body
    drawn = int(re.search(r'data-frames-drawn="(\d+)"', body).group(1))
    assert drawn >= 2  # the first frame and at least one animation frame
    shot = Image.open(page.screenshot)
    assert shot.size == (1000, 700)
    assert len(np.unique(np.asarray(shot.convert("RGB")).reshape(-1, 3), axis=0)) > 200  # not blank
    assert _colour_pixels(shot, SIMULATED_COLOUR) > 500  # the simulated character is drawn
    assert _colour_pixels(shot, REFERENCE_COLOUR) > 500  # and its reference beside it


def test_gif_and_mp4(rollout, tmp_path):
    import imageio_ffmpeg
    from PIL import Image

    from factory.presentation.render import REFERENCE_COLOUR, SIMULATED_COLOUR, write_video

    scene, _ = rollout
    gif = write_video(scene, tmp_path / "squat.gif")
    with Image.open(gif) as image:
        assert image.size == (480, 270)
        assert image.n_frames == 16  # 1 s at 15 frames/s, both ends
        first = np.asarray(image.convert("RGB")).copy()
        assert _colour_pixels(image, SIMULATED_COLOUR, 60) > 100
        assert _colour_pixels(image, REFERENCE_COLOUR, 60) > 100
        image.seek(15)
        assert np.abs(np.asarray(image.convert("RGB")).astype(int) - first).sum() > 0  # it moves

    mp4 = write_video(scene, tmp_path / "squat.mp4", width=320, height=180)
    assert mp4.read_bytes()[4:8] == b"ftyp"
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(mp4))
    assert frames == 31 and seconds == pytest.approx(31 / 30, abs=0.05)
    with pytest.raises(ValueError, match="must end in"):
        write_video(scene, tmp_path / "squat.avi")


def test_contact_sheet_shows_frames_across_the_rollout(rollout, tmp_path):
    from PIL import Image

    from factory.presentation.render import SIMULATED_COLOUR, write_contact_sheet

    scene, _ = rollout
    sheet = write_contact_sheet(scene, tmp_path / "squat.png", panels=6, columns=3, width=200)
    with Image.open(sheet) as image:
        assert image.size == (600, 2 * 112)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    panels = [pixels[r * 112 : (r + 1) * 112, c * 200 : (c + 1) * 200] for r in range(2) for c in range(3)]
    assert all(_colour_pixels(Image.fromarray(p.astype(np.uint8)), SIMULATED_COLOUR, 60) > 20 for p in panels)
    assert np.abs(panels[0] - panels[-1]).sum() > 0  # the first and last frames differ: time passes


def test_render_cli_for_a_policy_and_a_composition(library, tmp_path, capsys):
    from factory.compose import compose
    from factory.library.cli import main

    root = str(library.root)
    assert main(["--root", root, "render", "wave_poses", "--seconds", "0.5", "--out", str(tmp_path / "w.html")]) == 0
    data = _scene_json((tmp_path / "w.html").read_text())
    assert data["frames"] == 16 and data["title"] == "sample/wave_poses v1"
    assert "best_effort, 3 attempt(s)" in data["subtitle"]

    composition = compose(library, ["squat_poses", "wave_poses"], seconds=0.5)
    saved = composition.save(tmp_path / "sw.npz")
    assert main(["render", str(saved), "--out", str(tmp_path / "sw.html")]) == 0  # a file needs no library
    data = _scene_json((tmp_path / "sw.html").read_text())
    assert [s["name"] for s in data["segments"]] == ["squat_poses", "wave_poses"][: len(composition.segments)]
    assert data["frames"] == composition.trajectory.steps + 1

    assert main(["--root", root, "render", "squat_poses", "--out", str(tmp_path / "x.avi")]) == 2
    assert main(["--root", root, "render", "no_such_clip", "--out", str(tmp_path / "x.html")]) == 2
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    assert main(["render", str(tmp_path / "junk.npz"), "--out", str(tmp_path / "x.html")]) == 2
    assert main(["render", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert "unknown output format" in err and "no clip named" in err and "junk.npz" in err
    assert "no such trajectory file" in err
