"""MLX backend for autotune: Apple's array framework through mlx-lm.

On Apple silicon MLX runs on the Metal GPU with unified memory; elsewhere the ``mlx[cpu]`` build
runs on the CPU (slowly). The module imports without MLX; ``MlxBackend().availability()`` then
says what to install.
"""

from .backend import MlxBackend
from .deployment import MlxDeployment
from .exporters import EXPORTERS, render_generate, render_python, render_server
from .quantization import QuantSpec
from .settings import RuntimeSettings

__all__ = [
    "EXPORTERS", "MlxBackend", "MlxDeployment", "QuantSpec", "RuntimeSettings", "render_generate", "render_python", "render_server",
]
