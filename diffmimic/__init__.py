"""DiffMimic: physics-based motion imitation by analytic gradients through a differentiable simulator."""

__version__ = "0.1.0"
