"""The project's `jit`: which of XLA's CPU library (YNNPACK) fusions the compiled steps may use."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmimic import compile as compile_module
from diffmimic.compile import ENV_VAR, compiler_options, jit, library_fusions

cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the options are for XLA's CPU backend")


def _work(x, y):
    return jnp.sum(jnp.tanh(x @ y) * x, axis=1)


def _fusions(compiled_text: str) -> dict[str, list[str]]:
    """The ops of each library fusion in a compiled module's text: {fusion name: its op names}."""
    fused = {}
    for name, body in re.findall(r"(%?\w*ynn_fusion\w*) = [^\n]*calls=(%[\w.]+)", compiled_text):
        computation = re.search(re.escape(body) + r" [^{]*\{(.*?)\n\}", compiled_text, re.S)
        fused[name] = re.findall(r"= \S+ (\w+)\(", computation.group(1)) if computation else []
    return fused


def _args():
    return (jax.random.normal(jax.random.PRNGKey(0), (64, 64)), jax.random.normal(jax.random.PRNGKey(1), (64, 64)))


@cpu_only
@pytest.mark.parametrize("setting", ["none", "dot"])
def test_each_setting_limits_the_library_fusions_and_computes_the_same(setting, monkeypatch):
    if not compiler_options("cpu", setting):
        pytest.skip("this jaxlib's XLA has no YNNPACK fusion option: XLA's defaults are used")
    monkeypatch.setenv(ENV_VAR, setting)
    x, y = _args()
    default = jax.jit(_work).lower(x, y).compile()
    project = jit(_work).lower(x, y).compile()
    default_fusions, fusions = _fusions(default.as_text()), _fusions(project.as_text())
    assert any("reduce" in ops for ops in default_fusions.values()), (
        f"XLA's default is expected to hand the reduction to YNNPACK: {default_fusions}"
    )
    if setting == "none":
        assert not fusions
    else:  # the dot stays a library fusion, the reduction does not
        assert fusions and all("dot" in ops and "reduce" not in ops for ops in fusions.values()), fusions
    np.testing.assert_allclose(np.asarray(project(x, y)), np.asarray(default(x, y)), rtol=1e-5, atol=1e-5)


def test_other_backends_xla_setting_and_bad_settings(monkeypatch):
    assert compiler_options("gpu") == {}
    assert compiler_options("cpu", "xla") == {}
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert library_fusions() == compile_module.DEFAULT_LIBRARY_FUSIONS
    monkeypatch.setenv(ENV_VAR, "xla")
    x, y = _args()
    assert _fusions(jit(_work).lower(x, y).compile().as_text()) == _fusions(
        jax.jit(_work).lower(x, y).compile().as_text()
    )
    monkeypatch.setenv(ENV_VAR, "fast")
    with pytest.raises(ValueError, match=ENV_VAR):
        library_fusions()
