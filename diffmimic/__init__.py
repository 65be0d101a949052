"""DiffMimic: physics-based motion imitation by analytic gradients through a differentiable simulator."""

import contextlib
import io
import warnings

__version__ = "0.1.0"

# Keeps two notes out of every process's console (each Ray worker printed them again): MuJoCo's MJX
# prints that its optional Warp backend is not installed (it is not used here), so it is imported
# here, quietly, before brax imports it; and Brax warns on every system it builds that it is no
# longer maintained (the physics backends and their choice are documented in the README).
with contextlib.redirect_stdout(io.StringIO()):
    try:
        import mujoco.mjx  # noqa: F401
    except ImportError:
        pass
warnings.filterwarnings(
    "ignore", message="Brax System, piplines and environments are not actively", category=UserWarning
)
