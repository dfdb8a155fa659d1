"""A package's public names, imported on first use (PEP 562), for `nlu/` and `retrieval/`.

Each keeps its own table of public name -> (module, name there) and sets
``__getattr__ = lazy_exports(__name__, table)``, so that importing the
package costs nothing until a name is used.
"""
from importlib import import_module
from typing import Any, Callable, Dict, Tuple


def lazy_exports(package: str, public: Dict[str, Tuple[str, str]]) -> Callable[[str], Any]:
    """The module-level ``__getattr__`` of `package`: each name of `public` from its module."""

    def __getattr__(name: str) -> Any:
        if name in public:
            module, attribute = public[name]
            return getattr(import_module(module), attribute)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
