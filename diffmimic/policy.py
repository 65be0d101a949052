"""The policy: an MLP from normalised observations to PD targets, and its Orbax checkpoints."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from brax.training.acme import running_statistics

from diffmimic import atomic


class MLP(nn.Module):
    """Hidden layers with swish, then a linear output layer (the paper: 512, 256)."""

    hidden: Sequence[int]
    action_size: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs
        for width in self.hidden:
            x = nn.swish(nn.Dense(width)(x))
        return nn.Dense(self.action_size, kernel_init=nn.initializers.lecun_uniform())(x)


def make_policy_network(observation_size: int, action_size: int, hidden: Sequence[int] = (512, 256)):
    """Returns (init(key) -> params, apply(params, normaliser, obs) -> action)."""
    module = MLP(hidden=tuple(hidden), action_size=action_size)

    def init(key: jax.Array):
        return module.init(key, jnp.zeros((observation_size,)))

    def apply(params, normaliser, obs):
        return module.apply(params, running_statistics.normalize(obs, normaliser))

    return init, apply


def init_normaliser(observation_size: int):
    return running_statistics.init_state(jax.ShapeDtypeStruct((observation_size,), jnp.float32))


def save_policy(directory: str | os.PathLike, params, normaliser, meta: dict) -> Path:
    """Writes an Orbax checkpoint of {params, normaliser} plus `policy.json` into `directory`.

    The checkpoint is written beside `directory/checkpoint` and swapped in complete
    (`diffmimic.atomic.replace_directory`): a reader sees the old checkpoint or the new one, and
    replacing one never deletes the old before the new exists. `policy.json` is written the same
    way, after the checkpoint.
    """
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "checkpoint"

    def write(staging: Path) -> None:
        try:
            # Synchronous: the checkpoint is complete (or the save failed) when this returns.
            with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as checkpointer:
                checkpointer.save(staging, args=ocp.args.StandardSave({"params": params, "normaliser": normaliser}))
        except BaseException:
            for partial in staging.parent.glob(f"{staging.name}.orbax-checkpoint-tmp*"):  # Orbax's own
                shutil.rmtree(partial, ignore_errors=True)
            raise

    atomic.replace_directory(target, write, create=False)
    atomic.write_json(directory / "policy.json", meta)
    return target


def load_policy(directory: str | os.PathLike, observation_size: int, action_size: int, hidden: Sequence[int]):
    """Reads a checkpoint written by `save_policy`; returns (params, normaliser)."""
    directory = Path(directory).absolute()
    init, _ = make_policy_network(observation_size, action_size, hidden)
    abstract = {
        "params": jax.eval_shape(init, jax.random.PRNGKey(0)),
        "normaliser": jax.eval_shape(lambda: init_normaliser(observation_size)),
    }
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(directory / "checkpoint", abstract)
    return restored["params"], restored["normaliser"]


def tree_is_finite(tree) -> bool:
    return all(bool(np.isfinite(np.asarray(leaf)).all()) for leaf in jax.tree.leaves(tree))
