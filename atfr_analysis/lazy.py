"""The package's one scheme for names imported on first use (PEP 562's module ``__getattr__``).

A package whose ``__init__`` should stay cheap lists the names a submodule defines and lets this
module import that submodule when one of them is first read::

    __getattr__ = lazy_exports(__name__, {"sample_views": "views", "make_dataset": "synthetic"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SUBMODULE", "lazy_exports"]

#: a name that is itself a submodule of the package (``{"profile": SUBMODULE}``)
SUBMODULE = "."


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``names[name]`` is the submodule of ``package``
    (relative name) that defines ``name``; it is imported when ``name`` is first read. Any other
    name is an ``AttributeError``, as for a plain module."""
    table = dict(names)

    def __getattr__(name: str) -> Any:
        sub = table.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if sub == SUBMODULE:
            return importlib.import_module(f"{package}.{name}")
        return getattr(importlib.import_module(f"{package}.{sub}"), name)

    __getattr__.names = frozenset(table)  # for a package's ``__dir__``
    return __getattr__
