"""Optional parts and the error that names the extra to install when one is missing.

The server, the DataFrame adapters and the chat panel need packages that a plain
``pip install mimc-rx`` does not bring. Without this check the user meets the failure deep
inside (``No module named 'starlette'`` from the command line, a DataFrame future that never
resolves because numpy failed in a loop callback). :func:`require_extra` is called where an
optional part starts, so the error comes at once and says what to run.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable

from mimc_rx.errors import MimcError

__all__ = ["EXTRAS", "MissingExtra", "require_extra"]

EXTRAS: dict[str, tuple[str, ...]] = {
    "server": ("starlette", "uvicorn"),
    "frames": ("numpy", "pandas", "pyarrow"),
    "plots": ("matplotlib",),
    "notebook": ("ipywidgets", "IPython"),
}
"""The import names each extra of ``pyproject.toml`` brings (``plots`` is part of ``frames``)."""

_PIP_EXTRA = {"plots": "frames"}


class MissingExtra(MimcError, ImportError):
    """An optional part was used without its extra installed.

    Attributes:
        extra: the extra to install (``server``, ``frames``, ``notebook``).
        missing: the import names that were not found.
        feature: what needed them, in words.
    """

    def __init__(self, extra: str, missing: Iterable[str], feature: str) -> None:
        self.extra = _PIP_EXTRA.get(extra, extra)
        self.missing = tuple(missing)
        self.feature = feature
        names = ", ".join(self.missing)
        super().__init__(
            f'{feature} needs {names}, which is not installed: pip install "mimc-rx[{self.extra}]"',
            name=self.missing[0] if self.missing else None,
        )


def _absent(module: str) -> bool:
    # sys.modules first: a test (or a user) may block a module by setting its entry to None.
    if module in sys.modules:
        return sys.modules[module] is None
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def require_extra(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtra` at once when a module of ``extra`` cannot be imported.

    Cheap: it looks modules up without importing them.
    """
    missing = [m for m in EXTRAS[extra] if _absent(m)]
    if missing:
        raise MissingExtra(extra, missing, feature)
