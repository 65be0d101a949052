"""Atomic writes: a target is its old content or its new content, never a part, never absent."""

import json

import jax
import numpy as np
import pytest

from diffmimic import atomic
from diffmimic.policy import init_normaliser, load_policy, make_policy_network, save_policy


def _hidden_entries(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_a_file_is_replaced_whole_and_a_failed_write_leaves_the_old_one(tmp_path):
    path = tmp_path / "result.json"
    atomic.write_json(path, {"version": 1})
    atomic.write_json(path, {"version": 2})
    assert json.loads(path.read_text()) == {"version": 2}

    def half_write(tmp):
        tmp.write_text('{"version": 3, "trunc')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_with(path, half_write)
    assert json.loads(path.read_text()) == {"version": 2}
    assert _hidden_entries(tmp_path) == []


def test_temporary_names_differ_between_calls(tmp_path):
    names = {atomic.temporary_sibling(tmp_path / "a.json").name for _ in range(50)}
    assert len(names) == 50


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "rename-aside"])
def test_a_directory_is_replaced_without_deleting_the_old_one_first(tmp_path, monkeypatch, exchange):
    if not exchange:  # as on NFS or macOS, where the kernel cannot swap two paths
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    target = tmp_path / "checkpoint"
    atomic.replace_directory(target, lambda d: (d / "old.bin").write_bytes(b"old"))

    def build(staging):
        # While the new directory is built, the old one is still there, complete.
        assert (target / "old.bin").read_bytes() == b"old"
        (staging / "new.bin").write_bytes(b"new")

    atomic.replace_directory(target, build)
    assert sorted(p.name for p in target.iterdir()) == ["new.bin"]
    assert _hidden_entries(tmp_path) == []

    def failing(staging):
        (staging / "partial.bin").write_bytes(b"par")
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):
        atomic.replace_directory(target, failing)
    assert sorted(p.name for p in target.iterdir()) == ["new.bin"]
    assert _hidden_entries(tmp_path) == []


def _policy(seed: int):
    init, _ = make_policy_network(4, 2, (8,))
    return init(jax.random.PRNGKey(seed)), init_normaliser(4)


def test_a_policy_checkpoint_is_replaced_in_place_and_a_failed_save_keeps_the_old_one(tmp_path):
    meta = {"observation_size": 4, "action_size": 2, "hidden": [8]}
    first, second = _policy(0), _policy(1)
    save_policy(tmp_path, *first, meta)
    save_policy(tmp_path, *second, meta)  # Orbax alone would refuse or, with force, delete first
    params, _ = load_policy(tmp_path, 4, 2, (8,))
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(second[0])):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    with pytest.raises(Exception):  # a leaf Orbax cannot write: the save fails part-way
        save_policy(tmp_path, {"params": object()}, second[1], meta)
    params, _ = load_policy(tmp_path, 4, 2, (8,))
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(second[0])):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert _hidden_entries(tmp_path) == []
