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
"""

from __future__ import annotations

import functools
import os

import jax

_OPTION = "xla_cpu_experimental_ynn_fusion_type"
LIBRARY_FUSIONS = {"xla": None, "none": "", "dot": "LIBRARY_FUSION_TYPE_DOT"}
DEFAULT_LIBRARY_FUSIONS = "dot"
ENV_VAR = "DIFFMIMIC_XLA_LIBRARY_FUSIONS"


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
