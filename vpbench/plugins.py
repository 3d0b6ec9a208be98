"""Plugin loading: built-ins and entry points, the same hooks for both.

Built-in plugins (vpbench's own datasets, metrics and trivial baselines) are modules listed
in :data:`BUILTIN_PLUGINS`; third-party ones come from the entry-point group ``vpbench``. Each
plugin's hooks are called one plugin at a time with a ``register`` callback that knows which
plugin is calling, so every registered object is attributed to its distribution, and a
plugin that raises or calls ``sys.exit`` (at import or while registering) is recorded and
skipped: its partial registrations are rolled back and the rest of the harness works. A plugin's
CLI command never replaces a built-in command or another plugin's.

Environment variables:
- ``VPBENCH_DISABLE_PLUGIN_AUTOLOAD=1``: load built-ins only (no entry points).
- ``VPBENCH_LOAD_PLUGINS=a,b``: load only these entry points (by entry-point name).
- ``VPBENCH_TRACE_PLUGINS=1``: trace every hook call to stderr (pluggy's tracer).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import types
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from vpbench import hookspecs
from vpbench.errors import PluginError, VPBenchError, one_line
from vpbench.protocols import Registered, validate_dataset, validate_metric, validate_model
from vpbench.registry import Registry, Source
from vpbench.tracking import validate_tracker

BUILTIN_PLUGINS = (
    "vpbench.builtin.digits",
    "vpbench.builtin.mmnist",
    "vpbench.builtin.kth",
    "vpbench.builtin.videofolder",
    "vpbench.builtin.mfmnist",
    "vpbench.builtin.taxibj",
    "vpbench.builtin.human",
    "vpbench.builtin.kitticaltech",
    "vpbench.builtin.bair",
    "vpbench.builtin.weatherbench",
    "vpbench.builtin.trivial",
    "vpbench.metrics.basic",
    "vpbench.metrics.lpips",
    "vpbench.metrics.fvd",
    "vpbench.trackers",
)
BUILTIN_DIST = "vpbench"
KINDS = ("models", "datasets", "metrics", "trackers")


def _vpbench_version() -> str:
    from vpbench.version import __version__

    return __version__


@dataclass
class PluginRecord:
    """One plugin as ``vpbench plugins`` shows it."""

    name: str
    distribution: str
    version: str
    registered: Registered = field(default_factory=Registered)
    error: str | None = None

    @property
    def source(self) -> Source:
        return Source(self.name, self.distribution, self.version)


class Harness:
    """The loaded plugins and their registries (models, datasets, metrics)."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.models: Registry[type] = Registry("model", validate_model)
        self.datasets: Registry[type] = Registry("dataset", validate_dataset)
        self.metrics: Registry[Any] = Registry("metric", validate_metric)
        self.trackers: Registry[type] = Registry("tracker", validate_tracker)
        self.records: list[PluginRecord] = []
        if os.environ.get("VPBENCH_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()

    # -- loading -------------------------------------------------------------------------
    def load_builtins(self) -> None:
        for module_name in BUILTIN_PLUGINS:
            short = "builtin:" + module_name.rsplit(".", 1)[-1]
            record = PluginRecord(short, BUILTIN_DIST, _vpbench_version())
            try:
                module = importlib.import_module(module_name)
            except (Exception, SystemExit) as exc:  # a broken built-in is reported like any plugin
                record.error = f"import failed: {_why(exc)}"
                self.records.append(record)
                continue
            self.add_plugin(module, record)

    def load_entrypoints(self, group: str = hookspecs.PROJECT) -> None:
        if os.environ.get("VPBENCH_DISABLE_PLUGIN_AUTOLOAD"):
            return
        only = os.environ.get("VPBENCH_LOAD_PLUGINS")
        wanted = {n.strip() for n in only.split(",")} if only else None
        seen: set[tuple[str, str]] = set()
        available = {ep.name for ep in metadata.entry_points(group=group)}
        if wanted is not None and wanted - available - {""}:
            from vpbench.errors import RegistryError
            from vpbench.registry import suggest

            name = sorted(wanted - available - {""})[0]
            raise RegistryError(f"VPBENCH_LOAD_PLUGINS names '{name}', which no installed distribution provides"
                                f"{suggest(name, sorted(available))}; entry points here: "
                                f"{', '.join(sorted(available)) or 'none'}")
        for ep in metadata.entry_points(group=group):
            dist = ep.dist.name if ep.dist else "unknown"
            version = ep.dist.version if ep.dist else ""
            if (ep.name, ep.value) in seen or (wanted is not None and ep.name not in wanted):
                continue  # the same distribution can be visible twice on sys.path
            seen.add((ep.name, ep.value))
            record = PluginRecord(ep.name, dist, version)
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # SystemExit too: one plugin never ends every command
                record.error = f"import of {ep.value} failed: {_why(exc)}"
                self.records.append(record)
                continue
            self.add_plugin(plugin, record)

    def add_plugin(self, plugin: Any, record: PluginRecord) -> PluginRecord:
        """Register ``plugin`` with pluggy, then call its hooks; failures go on the record."""
        self.records.append(record)
        plugin = _hashable(plugin, record.name)
        try:
            self.pm.register(plugin, name=record.name)
            self.pm.check_pending()
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            record.error = f"invalid plugin: {one_line(exc)}"
            return record
        try:
            self._collect(plugin, record)
        except (Exception, SystemExit) as exc:
            record.error = f"registration failed: {_why(exc)}"
        return record

    def _implements(self, plugin: Any, name: str) -> bool:
        return any(impl.plugin is plugin for impl in getattr(self.pm.hook, name).get_hookimpls())

    def _hook(self, name: str, plugin: Any) -> Any:
        """The hook ``name`` of ``plugin`` alone, called through pluggy (so tracing sees it)."""
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        return self.pm.subset_hook_caller(name, remove_plugins=others)

    def _collect(self, plugin: Any, record: PluginRecord) -> None:
        """Call the plugin's register hooks; commit what it registered only if all succeed."""
        staged: dict[str, _Register] = {kind: _Register(record.name, kind) for kind in KINDS}
        for kind in KINDS:
            if self._implements(plugin, f"vpbench_register_{kind}"):
                self._hook(f"vpbench_register_{kind}", plugin)(register=staged[kind])
        registries = {"models": self.models, "datasets": self.datasets, "metrics": self.metrics, "trackers": self.trackers}
        try:
            with contextlib.ExitStack() as stack:
                for registry in registries.values():
                    stack.enter_context(registry.transaction())
                for kind in KINDS:
                    for obj in staged[kind]:
                        getattr(record.registered, kind).append(registries[kind].add(obj, record.source))
        except BaseException:
            record.registered = Registered()
            raise

    def freeze(self) -> None:
        """No registrations after this (the CLI freezes once plugins and their commands are loaded)."""
        for registry in (self.models, self.datasets, self.metrics, self.trackers):
            registry.freeze()

    def register_commands(self, app: Any) -> None:
        """Let plugins add CLI commands; a failing plugin is recorded, not fatal.

        A plugin's commands are added all or none: a name that is already taken (a built-in
        command or group, or another plugin's), a hook that raises, or one that touches the
        commands already there leaves ``app`` as it was and records the plugin as failed."""
        taken = {name: "a built-in vpbench command" for name in _command_names(app.registered_commands,
                                                                              app.registered_groups)}
        for record in self.records:
            plugin = self.pm.get_plugin(record.name)
            if plugin is None or record.error is not None or not self._implements(plugin, "vpbench_register_commands"):
                continue
            before = (list(app.registered_commands), list(app.registered_groups), app.registered_callback)
            try:
                self._hook("vpbench_register_commands", plugin)(app=app)
                names = _added_names(app, before)
            except (Exception, SystemExit) as exc:
                app.registered_commands[:], app.registered_groups[:], app.registered_callback = before
                record.error = f"adding commands failed: {_why(exc)}"
                continue
            clash = next((n for n in names if n in taken or names.count(n) > 1), None)
            if clash is not None:
                app.registered_commands[:], app.registered_groups[:], app.registered_callback = before
                owner = taken.get(clash, "another command of the same plugin")
                record.error = (f"adding commands failed: command '{clash}' is already {owner}; none of this "
                                "plugin's commands were added (give it another name)")
                continue
            taken.update({n: f"a command of plugin '{record.name}' ({record.distribution})" for n in names})

    # -- queries -------------------------------------------------------------------------
    @property
    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records if r.error]

    def source_of(self, kind: str, name: str) -> Source:
        registry = {"model": self.models, "dataset": self.datasets, "metric": self.metrics, "tracker": self.trackers}[kind]
        return registry.entry(name).source

    def call(self, kind: str, name: str, what: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``; an exception of the plugin's own code becomes one line naming
        the plugin, its distribution and what it was doing."""
        try:
            return fn(*args, **kwargs)
        except VPBenchError:
            raise
        except Exception as exc:
            raise PluginError(f"{kind} '{name}' from {self.source_of(kind, name)} raised while {what}: {one_line(exc)}") from exc


class _Register(list):
    """The ``register`` callback handed to one plugin's hook: collects what it registers."""

    def __init__(self, plugin: str, kind: str) -> None:
        super().__init__()
        self.plugin, self.kind = plugin, kind

    def __call__(self, obj: Any) -> None:
        self.append(obj)

    def __repr__(self) -> str:
        return f"<register {self.kind} of plugin '{self.plugin}'>"


def _why(exc: BaseException) -> str:
    """The one line for a plugin's exception; ``sys.exit`` is named as such."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return one_line(exc)


def _command_names(commands: list[Any], groups: list[Any]) -> list[str]:
    """The names these Typer command and group entries take on the command line (a group added
    without a name contributes its commands' names), one per entry."""
    import typer

    names = []
    for info in commands:
        names.append(info.name or typer.main.get_command_name(info.callback.__name__))
    for info in groups:
        name = typer.main.solve_typer_info_defaults(info).name
        sub = info.typer_instance
        names += [name] if name else _command_names(sub.registered_commands, sub.registered_groups)
    return names


def _added_names(app: Any, before: tuple[list[Any], list[Any], Any]) -> list[str]:
    """The names of the commands and groups a plugin's hook added to ``app``; a hook that removed,
    replaced or reordered what was there, or set the app's callback, raises."""
    commands, groups, callback = before
    kept = all(len(now) >= len(was) and all(a is b for a, b in zip(now, was))
               for now, was in ((app.registered_commands, commands), (app.registered_groups, groups)))
    if not kept or app.registered_callback is not callback:
        raise PluginError("the hook changed the commands already there (it may only add its own)")
    return _command_names(app.registered_commands[len(commands):], app.registered_groups[len(groups):])


def _hashable(plugin: Any, name: str) -> Any:
    """``plugin``, or a module holding its attributes when it cannot be hashed (pluggy keys
    plugins by identity in sets; e.g. a ``types.SimpleNamespace`` of hook functions)."""
    try:
        hash(plugin)
        return plugin
    except TypeError:
        module = types.ModuleType(f"vpbench_plugin_{name}")
        for attr in dir(plugin):
            if not attr.startswith("__"):
                setattr(module, attr, getattr(plugin, attr))
        return module


_HARNESS: Harness | None = None


def get_harness(reload: bool = False) -> Harness:
    """The process-wide harness with built-ins and entry-point plugins loaded."""
    global _HARNESS
    if _HARNESS is None or reload:
        harness = Harness()
        harness.load_builtins()
        harness.load_entrypoints()
        _HARNESS = harness
    return _HARNESS

