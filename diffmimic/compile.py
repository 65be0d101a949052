"""`jit`: `jax.jit` with the XLA options this project's simulator steps compile best with.

On a CPU, XLA (jaxlib 0.10) hands dots, element-wise ops and reductions to YNNPACK library
fusions. The humanoid's step and its gradient are thousands of small ops over a batch of
environments, and there those fusions can cost more than XLA's own loops: at 64 environments they
took 44 % of a profiled train step (README: "Where a CPU train step's time goes").

Which library fusions XLA may form is a choice, `DIFFMIMIC_XLA_LIBRARY_FUSIONS`:
  `dot`   only dot-rooted ones (the policy network's matrix products), the default;
  `none`  none: XLA emits its own loops for everything;
  `xla`   XLA's default set.
`scripts/bench_train.py --xla xla dot none` measures them against each other.

The option is set per compiled function, not in `XLA_FLAGS`, so a process that imports this package
keeps its own XLA settings, and a jaxlib without the option compiles as before: the option is probed
once per process with a trivial compile and left out where XLA rejects it. Other backends (GPU)
compile with XLA's defaults.

`use_cpu_cores`: XLA runs the humanoid's small ops on one thread, so one train step keeps one core
busy however many the process may use. Called before JAX starts (the entry points do), it gives
JAX one CPU device per core, and `env_sharding` splits a train step's environments over them:
each device simulates its share on its own core, and the policy gradient is summed across them.
At 64 environments on a 2-core CPU the physics gradient runs 1.4x faster, at 16 1.96x (README:
"Where a CPU train step's time goes"). One device (a factory worker pinned to one core, a GPU)
compiles exactly as before.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

_OPTION = "xla_cpu_experimental_ynn_fusion_type"
LIBRARY_FUSIONS = {"xla": None, "none": "", "dot": "LIBRARY_FUSION_TYPE_DOT"}
DEFAULT_LIBRARY_FUSIONS = "dot"
ENV_VAR = "DIFFMIMIC_XLA_LIBRARY_FUSIONS"
DEVICES_ENV_VAR = "DIFFMIMIC_CPU_DEVICES"


def library_fusions() -> str:
    """The library-fusion setting of this process (`DIFFMIMIC_XLA_LIBRARY_FUSIONS`, else the default)."""
    setting = os.environ.get(ENV_VAR, "") or DEFAULT_LIBRARY_FUSIONS
    if setting not in LIBRARY_FUSIONS:
        raise ValueError(f"{ENV_VAR}={setting!r}: expected one of {', '.join(LIBRARY_FUSIONS)}")
    return setting


@functools.cache
def _cpu_option_supported(value: str) -> bool:
    try:
        jax.jit(lambda x: x + 1, compiler_options={_OPTION: value}).lower(0.0).compile()
    except Exception:  # noqa: BLE001 - an XLA that does not know the option or value: keep its defaults
        return False
    return True


def compiler_options(backend: str | None = None, setting: str | None = None) -> dict[str, str]:
    """The XLA options `jit` compiles with on `backend` (default: JAX's default backend) for the
    library-fusion `setting` (default: `library_fusions()`)."""
    value = LIBRARY_FUSIONS[setting or library_fusions()]
    if value is None or (backend or jax.default_backend()) != "cpu" or not _cpu_option_supported(value):
        return {}
    return {_OPTION: value}


def jit(fun, **kwargs):
    """`jax.jit(fun, **kwargs)` compiled with `compiler_options()`."""
    options = compiler_options()
    if options:
        kwargs["compiler_options"] = {**options, **kwargs.get("compiler_options", {})}
    return jax.jit(fun, **kwargs)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def use_cpu_cores(count: int | None = None) -> int:
    """Gives JAX `count` CPU devices (default: `$DIFFMIMIC_CPU_DEVICES`, else `usable_cores()`),
    so that `env_sharding` can spread a train step's environments over the cores.

    Only possible before JAX runs its first operation; later (or on a jaxlib without the option)
    the process keeps the devices it has. Returns the number of CPU devices JAX will use.
    """
    if count is None:
        setting = os.environ.get(DEVICES_ENV_VAR, "")
        if setting and not setting.isdigit():
            raise ValueError(f"{DEVICES_ENV_VAR}={setting!r}: expected a number of devices")
        count = int(setting) if setting else usable_cores()
    try:
        jax.config.update("jax_num_cpu_devices", max(1, int(count)))
    except (RuntimeError, AttributeError):  # JAX already started: keep its devices
        return len(jax.devices("cpu"))
    return max(1, int(count))


def env_sharding(num_envs: int) -> NamedSharding | None:
    """How a batch of `num_envs` environments is split over the CPU devices: along its leading
    axis over the most devices that divide it evenly. None (one device, no split) on a GPU, with
    one CPU device, or when no split is even."""
    if jax.default_backend() != "cpu":
        return None
    devices = jax.devices()
    count = len(devices)
    while count > 1 and num_envs % count:
        count -= 1
    if count <= 1:
        return None
    return NamedSharding(Mesh(np.asarray(devices[:count]), ("envs",)), PartitionSpec("envs"))


def jit_over(fun, sharding: NamedSharding | None, **kwargs):
    """`jit(fun)` for a function that splits its environments with `sharding` (`env_sharding`):
    its arguments are placed, and its results kept, replicated on the same devices, so one
    compiled program serves every call (arguments that sit on one device would otherwise make
    XLA compile it again for them). With no sharding: plain `jit`."""
    if sharding is None:
        return jit(fun, **kwargs)
    everywhere = NamedSharding(sharding.mesh, PartitionSpec())
    compiled = jit(fun, out_shardings=everywhere, **kwargs)

    @functools.wraps(fun)
    def call(*args):
        return compiled(*jax.device_put(args, everywhere))

    return call


def enable_compilation_cache(directory: str | None = None) -> str:
    """Turns on JAX's persistent compilation cache (default ~/.cache/diffmimic/jax) unless one
    is already configured."""
    if directory is None and jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    directory = directory or os.environ.get("DIFFMIMIC_JAX_CACHE", str(Path.home() / ".cache" / "diffmimic" / "jax"))
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
