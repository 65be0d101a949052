"""A stored policy at run time (`Policy`: act, rollout) and the record helpers that describe
its network, character and metrics."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from factory.library.index import _FIELDS, LibraryError, PolicyRecord, _one_line


def _network_sizes(params) -> tuple[int, int, list[int]]:
    """(observation_size, action_size, hidden widths) of the policy MLP's parameters."""
    layers = params["params"]
    names = sorted(layers, key=lambda n: int(n.rsplit("_", 1)[1]))
    kernels = [layers[n]["kernel"].shape for n in names]
    return int(kernels[0][0]), int(kernels[-1][1]), [int(k[1]) for k in kernels[:-1]]


def character_dict(character_config) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(character_config)))


def character_config_from_dict(data: dict | None):
    from diffmimic.character.mjcf import CharacterConfig  # deferred: importing diffmimic loads MuJoCo's MJX and JAX

    if not data:
        return CharacterConfig()
    data = dict(data)
    if "solref" in data:
        data["solref"] = tuple(data["solref"])
    return CharacterConfig(**data)


def _metrics_dict(metrics) -> dict:
    if metrics is None:
        return {}
    if hasattr(metrics, "to_dict"):
        return metrics.to_dict()
    return dict(metrics)


# --------------------------------------------------------------------------------------------
# Policies.


@functools.lru_cache(maxsize=8)
def _jitted_apply(observation_size: int, action_size: int, hidden: tuple[int, ...]):
    import jax

    from diffmimic.policy import make_policy_network

    _, apply = make_policy_network(observation_size, action_size, hidden)
    return jax.jit(apply)


@dataclasses.dataclass
class Policy:
    """A loaded library policy: parameters, normaliser, its clip's reference and configs.

    `act(obs)` maps observations (obs_size,) or (batch, obs_size) to PD-target actions;
    `rollout(seconds=..., start_frame=...)` simulates it tracking its reference.
    """

    record: PolicyRecord
    params: Any
    normaliser: Any
    reference: Any  # diffmimic.mocap.retarget.Reference
    config: Any  # diffmimic.train.TrainConfig
    character_config: Any  # diffmimic.character.mjcf.CharacterConfig
    observation_size: int
    action_size: int

    @property
    def clip_id(self) -> str:
        return self.record.clip_id

    @property
    def env(self):
        """The mimic environment the policy was trained in (observe/step/reset)."""
        from diffmimic.train import compiled_functions

        return compiled_functions(self.config, self.character_config).env

    def act(self, obs):
        """Actions (..., action_size) for observations (..., observation_size)."""
        obs = np.asarray(obs, np.float32)
        if obs.shape[-1] != self.observation_size:
            raise ValueError(
                f"{self.record.ref}: observations must have {self.observation_size} features, got shape {obs.shape}"
            )
        apply = _jitted_apply(self.observation_size, self.action_size, tuple(self.config.hidden))
        return np.asarray(apply(self.params, self.normaliser, obs))

    def rollout(self, seconds: float | None = None, start_frame: int = 0):
        """Simulates the policy from reference frame `start_frame` for `seconds` (default: to the
        clip's end; beyond it the clip loops). Returns a `diffmimic.rollout.Trajectory` with body
        positions (N + 1, 24, 3) and per-frame pose error (N,)."""
        from diffmimic.rollout import rollout_policy

        return rollout_policy(
            self.config,
            self.params,
            self.normaliser,
            self.reference,
            seconds=seconds,
            start_frame=start_frame,
            character_config=self.character_config,
        )

    def check_robustness(self, rollouts: int | None = None, min_survival: float | None = None, seed: int = 0):
        """The perturbed-rollout check training applies (`diffmimic.robustness`): `rollouts`
        rollouts of the whole clip from perturbed first states, each pushed once (default: the
        policy's config's `robust_rollouts` and `robust_min_survival`). Returns a `Robustness`."""
        from diffmimic.env import ref_arrays
        from diffmimic.robustness import check_robustness
        from diffmimic.train import compiled_functions

        functions = compiled_functions(self.config, self.character_config)
        return check_robustness(
            functions,
            self.params,
            self.normaliser,
            ref_arrays(self.reference),
            rollouts if rollouts is not None else self.config.robust_rollouts,
            min_survival if min_survival is not None else self.config.robust_min_survival,
            seed=seed,
            control_hz=self.config.env.control_hz,
        )


def load_policy_directory(directory: str | os.PathLike, record: PolicyRecord | None = None) -> Policy:
    """Loads a version directory or an export (or a `diffmimic.train` output directory)."""
    from diffmimic.mocap.retarget import Reference
    from diffmimic.policy import load_policy
    from diffmimic.train import TrainConfig

    directory = Path(directory)
    try:
        meta = json.loads((directory / "policy.json").read_text())
        sizes = {key: meta[key] for key in ("observation_size", "action_size", "hidden")}
        config = TrainConfig.from_dict(json.loads((directory / "config.json").read_text()))
    except KeyError as err:
        raise LibraryError(f"{directory / 'policy.json'}: incomplete, no {err} (not a policy directory)") from None
    except (OSError, ValueError, TypeError) as err:
        raise LibraryError(f"{directory}: not a policy directory ({_one_line(err)})") from None
    if record is None:
        meta_path = directory / "meta.json"
        if meta_path.is_file():
            data = json.loads(meta_path.read_text())
            record = PolicyRecord(**{k: data.get(k) for k in _FIELDS})
        else:
            record = PolicyRecord(
                clip_id=f"local/{directory.name}",
                version=0,
                name=directory.name,
                dataset="local",
                status="best_effort",
                attempts=1,
                created_at="",
                path=str(directory),
            )
    from diffmimic.train import simulated_character_config

    # Rows before the simulated body was recorded hold the untuned config: tuned here alike.
    character_config = simulated_character_config(config, character_config_from_dict(record.character))
    params, normaliser = load_policy(directory, sizes["observation_size"], sizes["action_size"], sizes["hidden"])
    reference = Reference.load(directory / "reference.npz")
    return Policy(
        record=record,
        params=params,
        normaliser=normaliser,
        reference=reference,
        config=config,
        character_config=character_config,
        observation_size=int(meta["observation_size"]),
        action_size=int(meta["action_size"]),
    )
