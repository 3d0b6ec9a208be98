"""plugins/README.md documents the whole plugin API, and the core reads optional members only
through the declared defaults (in the style of datasette's test_plugin_hooks_are_documented)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from vpbench import hookspecs, protocols

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "plugins" / "README.md").read_text().replace("\\|", "|")


def signature(fn, name: str | None = None) -> str:
    """``name(a: T, b: U = default) -> R`` with annotations exactly as written in the source."""
    sig = inspect.signature(fn)
    parts = []
    for p in sig.parameters.values():
        text = p.name if p.annotation is p.empty else f"{p.name}: {p.annotation}"
        parts.append(text if p.default is p.empty else f"{text} = {p.default!r}")
    ret = "" if sig.return_annotation is sig.empty else f" -> {sig.return_annotation}"
    return f"{name or fn.__name__}({', '.join(parts)}){ret}"


def members(cls: type) -> list[str]:
    """Every declared member of a protocol or base class as the docs must spell it."""
    out = []
    for name, ann in cls.__dict__.get("__annotations__", {}).items():
        ann = ann.removeprefix("ClassVar[").removesuffix("]") if ann.startswith("ClassVar[") else ann
        out.append(f"{name}: {ann}")
    for name, value in cls.__dict__.items():
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(value, classmethod):
            out.append(signature(value.__func__))
        elif isinstance(value, property):
            out.append(f"{name}: {value.fget.__annotations__['return']}")
        elif inspect.isfunction(value) and value.__name__ == name:  # not typing.Protocol's stand-in __init__
            out.append(signature(value))
    return out


DECLARED = [(cls.__name__, m) for cls in (*protocols.REQUIRED.values(), *protocols.BASES.values()) for m in members(cls)]
HOOKS = [signature(getattr(hookspecs, n)) for n in dir(hookspecs) if n.startswith("vpbench_")]


def test_the_surface_is_what_the_harness_reads():
    names = {m.split("(")[0].split(":")[0] for _, m in DECLARED}
    assert {"on_stage_start", "on_stage_end", "late_fields", "predict_fields", "ablation_shortcuts",
            "import_state_dict", "prepare", "download", "presets", "description", "per_frame", "spec"} <= names
    assert len(HOOKS) == 5


@pytest.mark.parametrize("owner, text", DECLARED, ids=[f"{o}.{t.split('(')[0].split(':')[0]}" for o, t in DECLARED])
def test_every_member_is_documented_with_its_signature(owner, text):
    assert f"`{text}`" in DOC, f"plugins/README.md does not document {owner} member `{text}`"


@pytest.mark.parametrize("text", HOOKS)
def test_every_hook_is_documented_with_its_signature(text):
    assert f"`{text}`" in DOC, f"plugins/README.md does not document hook `{text}`"


def test_stage_fields_are_documented_with_their_defaults():
    parts = []
    for f in dataclasses.fields(protocols.Stage):
        if f.default is dataclasses.MISSING:
            parts.append(f.name)
        elif f.name == "scheduler":
            parts.append('scheduler="cosine"|"constant"')
        else:
            parts.append(f"{f.name}={f.default!r}")
    assert f"`Stage({', '.join(parts)})`" in DOC.replace("\n", " ")


OPTIONAL = {name for base in protocols.BASES.values() for name in base.__dict__ if not name.startswith("_")}


def _probes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value in OPTIONAL):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_the_core_reads_optional_members_only_through_their_declaration():
    probes = [p for path in sorted((ROOT / "vpbench").rglob("*.py")) if path.name != "protocols.py"
              for p in _probes(path)]
    assert not probes, "use vpbench.protocols.member/implements instead of probing: " + "; ".join(probes)


def test_the_package_is_typed():
    assert (ROOT / "vpbench" / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'vpbench = ["py.typed"]' in pyproject


def test_the_baselines_docstring_names_every_model_it_registers():
    import vpbench_baselines
    from vpbench.plugins import get_harness

    (record,) = [r for r in get_harness().records if r.name == "baselines"]
    missing = [name for name in record.registered.models if f"``{name}``" not in vpbench_baselines.__doc__]
    assert record.registered.models and not missing, f"vpbench_baselines' docstring does not name {missing}"
