"""The machine and library versions, recorded with every timing."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from .runner import available_cores

_PACKAGES = ("gbdnn", "python-graphblas", "suitesparse-graphblas", "numpy", "scipy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, object]:
    """Describe the machine and the libraries gbdnn runs on.

    Returns
    -------
    dict
        ``cpu``, ``cores`` (usable by this process), ``python``, ``platform``
        and the version of each of gbdnn's core packages.
    """
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": _cpu_model(),
        "cores": available_cores(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }
