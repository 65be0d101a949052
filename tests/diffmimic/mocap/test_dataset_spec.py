"""Dataset specs in datasets/*.yaml: loading, environment expansion and validation errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from diffmimic.mocap.dataset_spec import (
    READERS,
    DatasetSpec,
    DatasetSpecError,
    datasets_dir,
    expand_env,
    list_dataset_specs,
    load_dataset_spec,
)

SPECS = ("sample", "amass", "aistpp", "cmu")
ENV = {"sample": "DIFFMIMIC_SAMPLE_DIR", "amass": "AMASS_ROOT", "aistpp": "AISTPP_ROOT", "cmu": "CMU_MOCAP_ROOT"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ENV.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("DIFFMIMIC_DATASETS_DIR", raising=False)


def test_bundled_specs_are_found():
    assert datasets_dir() == Path(__file__).resolve().parents[3] / "datasets"
    assert set(SPECS) <= set(list_dataset_specs())


@pytest.mark.parametrize("name", SPECS)
def test_each_spec_loads(name):
    spec = load_dataset_spec(name)
    assert isinstance(spec, DatasetSpec)
    assert spec.name == name
    assert spec.reader in READERS
    assert spec.root.is_absolute() and "$" not in str(spec.root) and "~" not in str(spec.root)
    assert spec.include and spec.fps == 30.0
    assert spec.obtain.strip()
    assert 0 <= spec.min_duration_s < spec.max_duration_s
    assert all(rule.reason for rule in spec.exclude)
    assert spec.source == datasets_dir() / f"{name}.yaml"
    assert load_dataset_spec(spec.source) == spec  # the same file by path
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"


@pytest.mark.parametrize("name", SPECS)
def test_env_var_overrides_root(name, monkeypatch, tmp_path):
    default = load_dataset_spec(name).root
    assert default.is_relative_to(Path.home())
    monkeypatch.setenv(ENV[name], str(tmp_path / "data"))
    assert load_dataset_spec(name).root == tmp_path / "data"
    monkeypatch.setenv(ENV[name], "")  # empty counts as unset
    assert load_dataset_spec(name).root == default


def test_spec_contents():
    sample = load_dataset_spec("sample")
    assert sample.generate == "diffmimic.mocap.sample" and sample.reader == "amass_smplh"
    amass = load_dataset_spec("amass")
    assert amass.reader == "auto"
    assert {"**/*_poses.npz", "**/*_stageii.npz"} <= set(amass.include)
    assert {"CMU", "KIT", "BMLmovi", "ACCAD"} <= set(amass.subsets)
    patterns = {rule.pattern for rule in amass.exclude}
    assert {"*box*", "*chair*", "*stair*", "*ramp*", "*treadmill*"} <= patterns
    assert "non-commercial" in amass.obtain
    assert "CC BY 4.0" in load_dataset_spec("aistpp").obtain
    assert "free for all uses" in load_dataset_spec("cmu").obtain


def test_file_selection(tmp_path, monkeypatch):
    monkeypatch.setenv("AMASS_ROOT", str(tmp_path))
    spec = load_dataset_spec("amass")
    keep = ["CMU/05/05_01_poses.npz", "ACCAD/Female1Walking_c3d/B3 - walk1_poses.npz", "kit/3/walking_stageii.npz"]
    drop = {
        "ACCAD/Male2_c3d/B20 - walk with BOX_poses.npz": "box",
        "KIT/4/downstairs01_poses.npz": "stair",
        "CMU/01/01_02_poses.npz": "playground",
        "GRAB/s1/apple_eat_1_stageii.npz": "subsets",
        "CMU/05/shape.npz": "include",
        "CMU/05/05_01_poses.txt": "include",
    }
    for rel in keep + list(drop):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert spec.files() == sorted(tmp_path / rel for rel in keep)
    for rel, word in drop.items():
        assert word in spec.exclusion_reason(tmp_path / rel).lower()
    assert spec.accepts_duration(5.0) and not spec.accepts_duration(0.5) and not spec.accepts_duration(100.0)


def test_missing_root_explains_how_to_obtain(tmp_path, monkeypatch):
    monkeypatch.setenv("CMU_MOCAP_ROOT", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="mocap.cs.cmu.edu"):
        load_dataset_spec("cmu").files()


def test_sample_spec_generates_its_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFMIMIC_SAMPLE_DIR", str(tmp_path / "sample"))
    spec = load_dataset_spec("sample")
    assert spec.prepare() == tmp_path / "sample"
    from diffmimic.mocap.sample import SAMPLE_CLIPS

    assert [p.name for p in spec.files()] == sorted(f"{name}_poses.npz" for name in SAMPLE_CLIPS)


def test_expand_env():
    env = {"A": "/x", "EMPTY": ""}
    assert expand_env("${A}/b", environ=env) == "/x/b"
    assert expand_env("${B:-~/d}/c", environ=env) == "~/d/c"
    assert expand_env("${EMPTY:-dflt}", environ=env) == "dflt"
    with pytest.raises(DatasetSpecError, match="B is not set"):
        expand_env("${B}", "spec.yaml", "root", environ=env)


def _write(tmp_path, **overrides) -> Path:
    data = yaml.safe_load((datasets_dir() / "cmu.yaml").read_text())
    for key, value in overrides.items():
        if value is _DELETE:
            del data[key]
        else:
            data[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


_DELETE = object()


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"reader": _DELETE}, "reader", "missing required field"),
        ({"include": _DELETE}, "include", "missing required field"),
        ({"fps": "thirty"}, "fps", "must be a number"),
        ({"fps": True}, "fps", "must be a number"),
        ({"fps": -30}, "fps", "must be > 0"),
        ({"name": 5}, "name", "must be a string"),
        ({"reader": "fbx"}, "reader", "must be one of"),
        ({"include": "**/*.amc"}, "include", "must be a list"),
        ({"include": []}, "include", "at least one"),
        ({"exclude": [{"pattern": "*x*"}]}, "exclude", "'pattern' and 'reason'"),
        ({"exclude": [{"pattern": "*x*", "reason": ""}]}, "exclude", "non-empty"),
        ({"subsets": [1, 2]}, "subsets", "non-empty string"),
        ({"max_duration_s": 0.5}, "max_duration_s", "must be > min_duration_s"),
        ({"root": "${NO_SUCH_DIFFMIMIC_VAR}/x"}, "root", "NO_SUCH_DIFFMIMIC_VAR is not set"),
        ({"generate": "not a module"}, "generate", "dotted module name"),
        ({"frame_rate": 30}, "frame_rate", "unknown field"),
    ],
)
def test_bad_spec_names_file_and_field(tmp_path, overrides, field, message):
    path = _write(tmp_path, **overrides)
    with pytest.raises(DatasetSpecError, match=message) as info:
        load_dataset_spec(path)
    assert info.value.field == field
    assert str(path) in str(info.value) and repr(field) in str(info.value)


def test_unreadable_specs(tmp_path):
    with pytest.raises(DatasetSpecError, match="no dataset spec named 'nope'.*known: .*amass"):
        load_dataset_spec("nope")
    with pytest.raises(DatasetSpecError, match="not found"):
        load_dataset_spec(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(DatasetSpecError, match="invalid YAML") as info:
        load_dataset_spec(broken)
    assert str(broken) in str(info.value)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(DatasetSpecError, match="top level must be a mapping"):
        load_dataset_spec(listing)


def test_a_folder_glob_also_takes_files_directly_under_the_root(tmp_path, monkeypatch):
    from diffmimic.mocap.dataset_spec import path_matches

    assert path_matches("11_01.amc", "**/*.amc") and path_matches("subjects/11/11_01.AMC", "**/*.amc")
    assert path_matches("a/b/c_poses.npz", "a/**/c_poses.npz") and path_matches("a/c_poses.npz", "a/**/c_poses.npz")
    assert not path_matches("11_01.asf", "**/*.amc")
    monkeypatch.setenv("CMU_MOCAP_ROOT", str(tmp_path))
    for rel in ("11_01.amc", "subjects/02/02_01.amc", "11.asf"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert load_dataset_spec("cmu").files() == [tmp_path / "11_01.amc", tmp_path / "subjects/02/02_01.amc"]
