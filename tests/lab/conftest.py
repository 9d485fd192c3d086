"""Lab fixtures, defined in labkit.py (importable by name, unlike a conftest)."""

from labkit import lab, provisioned, restore_cluster, verified  # noqa: F401  (fixtures pytest must see here)
