"""Skeletons from an SMPL model file: a tiny synthetic model in SMPL's layout, written here."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("smplx")
pytest.importorskip("torch")

from diffmimic.character.shape import skeleton_from_smpl_model  # noqa: E402
from diffmimic.character.skeleton import NEUTRAL_REST_JOINTS_SMPL, SMPL_PARENTS, Skeleton  # noqa: E402

NUM_VERTS = 60
NUM_SHAPES = 10


def _tiny_model(seed: int = 0) -> dict[str, np.ndarray]:
    """A random 60-vertex body in the SMPL model-file layout (24 joints, SMPL tree)."""
    rng = np.random.default_rng(seed)
    # Vertices scattered around the neutral joints so the regressed joints look like a body.
    owner = np.arange(NUM_VERTS) % 24
    v_template = NEUTRAL_REST_JOINTS_SMPL[owner] + rng.normal(scale=0.02, size=(NUM_VERTS, 3))
    regressor = rng.uniform(0.0, 1.0, size=(24, NUM_VERTS)) * (owner[None, :] == np.arange(24)[:, None])
    regressor += 1e-3 * rng.uniform(size=(24, NUM_VERTS))
    regressor /= regressor.sum(axis=1, keepdims=True)
    weights = rng.uniform(size=(NUM_VERTS, 24))
    weights /= weights.sum(axis=1, keepdims=True)
    kintree = np.stack([np.array(SMPL_PARENTS, dtype=np.int64), np.arange(24)])
    kintree[0, 0] = 4294967295  # as in the official files (uint32 -1)
    faces = np.stack([np.arange(NUM_VERTS - 2), np.arange(1, NUM_VERTS - 1), np.arange(2, NUM_VERTS)], axis=1)
    return {
        "v_template": v_template,
        "shapedirs": rng.normal(scale=0.01, size=(NUM_VERTS, 3, NUM_SHAPES)),
        "posedirs": rng.normal(scale=0.001, size=(NUM_VERTS, 3, 207)),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": kintree,
        "f": faces.astype(np.int64),
    }


@pytest.fixture
def model_file(tmp_path):
    arrays = _tiny_model()
    path = tmp_path / "SMPL_NEUTRAL.npz"
    np.savez(path, **arrays)
    return path, arrays


def test_zero_betas_regress_the_template(model_file):
    path, arrays = model_file
    skeleton = skeleton_from_smpl_model(path)
    assert isinstance(skeleton, Skeleton)
    np.testing.assert_allclose(skeleton.rest_joints_smpl, arrays["J_regressor"] @ arrays["v_template"], atol=1e-12)
    assert skeleton.name.startswith("smpl_neutral_betas_")
    # None, zeros of any length and trailing zeros are the same body.
    assert skeleton_from_smpl_model(path, betas=np.zeros(16)).name == skeleton.name


def test_betas_move_the_joints(model_file):
    path, arrays = model_file
    betas = np.array([1.5, -0.8, 0.3, 0.0, 2.0])
    skeleton = skeleton_from_smpl_model(path, betas=betas)
    shaped = arrays["v_template"] + arrays["shapedirs"][..., :5] @ betas
    np.testing.assert_allclose(skeleton.rest_joints_smpl, arrays["J_regressor"] @ shaped, atol=1e-12)
    rest = skeleton_from_smpl_model(path)
    assert np.abs(skeleton.rest_joints_smpl - rest.rest_joints_smpl).max() > 1e-3
    assert skeleton.name != rest.name
    assert skeleton.offsets_smpl.shape == (24, 3)


def test_folder_and_gender(tmp_path):
    arrays = _tiny_model(seed=1)
    np.savez(tmp_path / "SMPL_FEMALE.npz", **arrays)
    skeleton = skeleton_from_smpl_model(tmp_path, betas=[0.5], gender="female")
    assert skeleton.name.startswith("smpl_female_betas_")
    with pytest.raises(FileNotFoundError, match="SMPL_MALE"):
        skeleton_from_smpl_model(tmp_path, gender="male")


def test_errors(tmp_path, model_file):
    path, _ = model_file
    with pytest.raises(FileNotFoundError, match="not found"):
        skeleton_from_smpl_model(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="shape components"):
        skeleton_from_smpl_model(path, betas=np.ones(NUM_SHAPES + 1))
    with pytest.raises(ValueError, match="gender"):
        skeleton_from_smpl_model(path, gender="robot")
    bad = tmp_path / "bad.npz"
    np.savez(bad, v_template=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="missing arrays"):
        skeleton_from_smpl_model(bad)


def test_missing_smplx_gives_install_hint(monkeypatch, model_file):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "smplx":
            raise ImportError("No module named 'smplx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'diffmimic-factory\[smplx\]'"):
        skeleton_from_smpl_model(model_file[0])
