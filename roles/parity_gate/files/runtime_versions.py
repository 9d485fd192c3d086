"""Print this interpreter's Python, Ray and MLX versions as one JSON object.

Imports ray and mlx.core for real, so a venv whose files exist but whose packages cannot load
(an interrupted install) fails here instead of at `ray start`.
"""
import json
import platform
import sys

versions = {"python": platform.python_version(), "executable": sys.executable}
try:
    import ray

    versions["ray"] = ray.__version__
except Exception as exc:  # report any import failure, not only ImportError
    versions["ray"] = "import failed: %s" % exc
try:
    import mlx.core as mx

    versions["mlx"] = mx.__version__
except Exception as exc:
    versions["mlx"] = "import failed: %s" % exc
print(json.dumps(versions))
