"""Dataset variants as declarations: a registered name for a base dataset whose config defaults
differ in a few fields (``kth40`` is ``kth`` with ``n_out=40``), like timm's model variants."""

from __future__ import annotations

import dataclasses
from typing import Any


def variant(base: type, cls_name: str, *, name: str, description: str, doc: str | None = None, **defaults: Any) -> type:
    """A subclass ``cls_name`` of the dataset ``base`` registered as ``name``, whose ``Config``
    is ``base.Config`` with ``defaults`` as the new defaults (same fields, order and types, so
    the run identity of a config is what a hand-written subclass gave). Assign it to a module
    variable called ``cls_name`` in ``base``'s module (instances are pickled by that name)."""
    fields = {f.name: f for f in dataclasses.fields(base.Config)}
    unknown = sorted(set(defaults) - set(fields))
    if unknown:
        raise TypeError(f"variant {name}: {base.__name__}.Config has no field {', '.join(unknown)}")
    module = base.__module__
    namespace = {"__module__": module, "__qualname__": f"{cls_name}.Config",
                 "__annotations__": {k: fields[k].type for k in defaults}, **defaults}
    config = dataclasses.dataclass(frozen=True)(type("Config", (base.Config,), namespace))
    cls = type(cls_name, (base,), {"__module__": module, "__qualname__": cls_name, "__doc__": doc, "name": name,
                                   "description": description, "Config": config})
    return cls
