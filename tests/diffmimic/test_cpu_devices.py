"""A train step's environments split over JAX CPU devices (`diffmimic.compile.use_cpu_cores`,
`env_sharding`, `jit_over`): it trains as on one device, and its state goes round without a
second compile; a backend that calls LAPACK stays on one device and still runs.

JAX fixes its CPU devices when it starts, so each device count runs in a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

SCRIPT = r"""
import json, sys
from diffmimic.compile import env_sharding, use_cpu_cores
devices = use_cpu_cores(int(sys.argv[1]))
import jax
import numpy as np
from diffmimic.env import ref_arrays
from diffmimic.mocap.retarget import load_reference
from diffmimic.mocap.sample import write_sample_dataset
from diffmimic.train import (compiled_functions, env_split, evaluate_policy, make_config, make_curriculum,
                             simulated_character)

config = make_config("cpu", num_envs=4, horizon=6, iterations=3)
clip = next(p for p in write_sample_dataset() if p.name.startswith("squat"))
reference = load_reference(clip, character=simulated_character(config))
functions = compiled_functions(config)
ref = functions.prepared(ref_arrays(reference))
curriculum = make_curriculum(config, reference.num_frames, ref.bucket)
state = functions.init(jax.random.PRNGKey(0), config.iterations)
state, first = functions.train_step(state, ref, curriculum)
params = [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]
evaluate_policy(functions, state.params, state.normaliser, ref)
events = []  # from here on: XLA compilations and compilation-cache loads
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
jax.monitoring.register_event_duration_secs_listener(lambda name, secs, **kw: events.append(name))
before_second = state
state, second = functions.train_step(state, ref, curriculum)
evaluation = evaluate_policy(functions, state.params, state.normaliser, ref)
compiled = [e for e in events if e in ("/jax/core/compile/backend_compile_duration",
                                        "/jax/compilation_cache/cache_hits")]
sharding = env_sharding(config.num_envs)
batch_loss = None
if len(sys.argv) > 2:  # K = 2 slots in one step (a K-slot worker), environments split within each
    from diffmimic.multiclip import stack_trees
    states, metrics = functions.train_step_batch(stack_trees([before_second, before_second]), stack_trees([ref, ref]),
                                                 stack_trees([curriculum, curriculum]))
    batch_loss = np.asarray(metrics.loss).tolist()
lapack = None
if len(sys.argv) > 2:  # a backend whose step calls LAPACK stays on one device, and its reference prepares
    # (replicated on two devices, this preparation never returned)
    lapack_config = make_config("cpu", num_envs=4, horizon=6, iterations=3, env={"backend": "generalized"})
    lapack_ref = compiled_functions(lapack_config).prepared(ref_arrays(
        load_reference(clip, character=simulated_character(lapack_config))))
    lapack = {"split": env_split(lapack_config) is not None,
              "finite": bool(np.isfinite(np.asarray(lapack_ref.physics.q)).all())}
print(json.dumps({"batch_loss": batch_loss, "lapack": lapack,
    "devices": len(jax.devices()), "split": sharding.mesh.size if sharding else 1,
    "first_loss": float(first.loss), "second_loss": float(second.loss),
    "params": [leaf.ravel()[:64].tolist() for leaf in params],
    "pose_error_m": float(evaluation.pose_error_m),
    "compiles_after_first": compiled,
}))
"""


def _run(devices: int, *extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(devices), *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_environments_split_over_two_cpu_devices_train_as_on_one():
    one, two = _run(1), _run(2, "slots")
    assert (one["devices"], one["split"]) == (1, 1)
    assert (two["devices"], two["split"]) == (2, 2)  # 4 envs, 2 per device
    # The state and evaluation went round again without compiling anything new.
    assert one["compiles_after_first"] == [] and two["compiles_after_first"] == [], two
    # The same iteration: the loss agrees to rounding (partitioned kernels round differently),
    # and so do the parameters after it.
    assert np.isfinite(two["first_loss"]) and two["first_loss"] > 0
    np.testing.assert_allclose(two["first_loss"], one["first_loss"], rtol=1e-3)
    for a, b in zip(two["params"], one["params"]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert np.isfinite(two["second_loss"]) and np.isfinite(two["pose_error_m"])
    # Two slots of the same clip and state: each slot's loss is that state's next loss.
    np.testing.assert_allclose(two["batch_loss"], [two["second_loss"]] * 2, rtol=1e-3)
    # `generalized` (LAPACK in its step) is not split, and with two devices it still runs.
    assert two["lapack"] == {"split": False, "finite": True}
