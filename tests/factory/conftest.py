"""Fixtures for the factory tests: real policies trained by the DiffMimic trainer.

The tiny configuration compiles once per session (and the persistent compilation cache in
tests/conftest.py keeps it across pytest processes); every clip then trains in seconds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

TINY = dict(num_envs=2, horizon=4, hidden=(32, 32), eval_every=2, iterations=2)
TRAINED_CLIPS = ("squat", "wave")


@dataclasses.dataclass
class Trained:
    """One clip trained by `diffmimic.train.train` and written by `write_outputs`."""

    name: str
    source: Path  # the sample mocap file
    reference: object
    result: object  # TrainResult
    config: object  # TrainConfig
    out_dir: Path  # the training output directory


@pytest.fixture(scope="session")
def tiny_config():
    from diffmimic.train import make_config

    return make_config("cpu", **TINY)


@pytest.fixture(scope="session")
def sample_clips(tmp_path_factory) -> dict[str, Path]:
    from diffmimic.mocap.sample import write_sample_dataset

    paths = write_sample_dataset(tmp_path_factory.mktemp("sample"))
    return {p.name.removesuffix("_poses.npz"): p for p in paths}


@pytest.fixture(scope="session")
def trained(sample_clips, tiny_config, tmp_path_factory) -> dict[str, Trained]:
    from diffmimic.mocap.retarget import load_reference
    from diffmimic.train import train, write_outputs

    runs = {}
    for seed, name in enumerate(TRAINED_CLIPS):
        config = dataclasses.replace(tiny_config, seed=seed)
        reference = load_reference(sample_clips[name], fps=config.env.control_hz)
        result = train(reference, config, progress=None)
        out_dir = write_outputs(tmp_path_factory.mktemp(f"train_{name}"), result, config, reference)
        runs[name] = Trained(name=name, source=sample_clips[name], reference=reference, result=result,
                             config=config, out_dir=out_dir)
    return runs


def _put_trained(library, clip_id: str, run: Trained, status: str = "best_effort", **kwargs):
    """Puts a trained run into `library` under `clip_id`."""
    return library.put_result(clip_id, run.result, run.config, run.reference, status=status,
                              source_path=run.source, **kwargs)


@pytest.fixture(scope="session")
def put_trained():
    return _put_trained


@pytest.fixture
def small_library(tmp_path, trained):
    """A real library: squat and wave in `sample`, squat again in `other` (a short-name clash),
    a second squat version, and a failed clip."""
    from factory.library import PolicyLibrary

    library = PolicyLibrary(tmp_path / "lib", create=True)
    put_trained = _put_trained
    put_trained(library, "sample/squat_poses", trained["squat"], status="best_effort")
    put_trained(library, "sample/squat_poses", trained["squat"], status="converged", attempts=2)
    put_trained(library, "sample/wave_poses", trained["wave"], status="converged")
    put_trained(library, "other/mocap/squat_poses", trained["squat"], status="best_effort")
    library.put_failure("sample/torso_twist_poses", "non-finite loss in every attempt", attempts=3,
                        source_path=trained["squat"].source.with_name("torso_twist_poses.npz"))
    return library
