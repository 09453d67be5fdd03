"""Plug-ins: installed packages that add attacks, image networks and pipelines to pertlearn.

A plug-in is a module named by an entry point of the group ``pertlearn.plugins`` in its
package's metadata::

    [project.entry-points."pertlearn.plugins"]
    myname = "mypkg.pertlearn_plugin"          # imported; its imports register what it adds
    # or "mypkg.pertlearn_plugin:register"     # imported, then register() is called

The module registers what it adds when imported, with :func:`pertlearn.attacks.register_attack`,
:func:`pertlearn.models.register_network` and
:func:`pertlearn.experiments.register_pipeline`. The registries call :func:`load_plugins`
before they look a name up or list their names, so every plug-in is imported once per
process, on the first look-up: the ``pertlearn`` command, the Python API, the spawned workers
of a local sweep and Ray workers see the same names without any of the user's code running
first. Help and listings never look a name up, so they do not pay for the scan of the
installed distributions (``importlib.metadata``).

A plug-in that fails to import (or whose registration is refused, e.g. a name another class
holds) makes every look-up in the process fail with one :class:`PluginError` naming the
entry point, its distribution and the exception; ``PERTLEARN_DISABLE_PLUGINS=1`` skips all
plug-ins. ``pertlearn plugins`` lists each plug-in with what it registered.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

from pertlearn.errors import PluginError

GROUP = "pertlearn.plugins"
"""The entry-point group whose entries are imported as plug-ins."""

DISABLE_VARIABLE = "PERTLEARN_DISABLE_PLUGINS"
"""Environment variable: when set to a non-empty value other than ``0``, no plug-in loads."""


@dataclass(frozen=True)
class Plugin:
    """One entry point of :data:`GROUP` as loaded in this process: its ``name``, its ``value``
    (``module`` or ``module:function``), the ``distribution`` that declares it and its
    ``version`` (``""`` when the entry point does not say), what it ``registered`` (``(kind,
    name)`` pairs, kind ``attack``, ``network`` or ``pipeline``, in order) and the ``error`` it
    failed with (``None`` when it loaded)."""

    name: str
    value: str
    distribution: str = ""
    version: str = ""
    registered: tuple[tuple[str, str], ...] = ()
    error: str | None = None

    @property
    def source(self) -> str:
        """``distribution version``, or ``unknown distribution``."""
        return f"{self.distribution} {self.version}".strip() or "unknown distribution"

    def names(self, kind: str) -> list[str]:
        """The names of ``kind`` (``attack``, ``network``, ``pipeline``) it registered."""
        return [name for k, name in self.registered if k == kind]


@dataclass(frozen=True)
class _Loaded:
    """What :func:`load_plugins` found: every plug-in, the message of the error to raise
    (``None`` when all loaded), and whether plug-ins were disabled."""

    plugins: tuple[Plugin, ...]
    error: str | None
    disabled: bool


_lock = threading.RLock()
_loaded: _Loaded | None = None
_recording: list[tuple[str, str]] | None = None


def plugins_disabled() -> bool:
    """Whether :data:`DISABLE_VARIABLE` turns plug-ins off in this process."""
    return os.environ.get(DISABLE_VARIABLE, "").strip() not in ("", "0")


def load_plugins() -> tuple[Plugin, ...]:
    """Import every plug-in once per process (later calls return at once) and return them;
    :class:`PluginError` (one line) when one failed, on this call and every later one. A
    call made while the plug-ins are being imported (a plug-in looking a name up) returns
    nothing at once; the registries then hold what has been registered so far."""
    loaded = _load()
    if loaded.error is not None:
        raise PluginError(loaded.error)
    return loaded.plugins


def plugin_report() -> tuple[tuple[Plugin, ...], bool]:
    """Every plug-in, loaded if not yet (a failed one carries its ``error``; nothing raised),
    and whether plug-ins are disabled (:data:`DISABLE_VARIABLE`)."""
    loaded = _load()
    return loaded.plugins, loaded.disabled


def loaded_distributions() -> list[str]:
    """``name version`` of the distributions whose plug-ins loaded in this process, sorted;
    empty when none did or none was looked for yet (this never loads plug-ins)."""
    loaded = _loaded
    if loaded is None:
        return []
    return sorted({p.source for p in loaded.plugins if p.error is None and p.distribution})


def qualified_name(obj: object) -> str:
    """``module.QualifiedName`` of a class or function: how the registries tell the same code
    registered again (its module reloaded) from other code claiming a name."""
    name = getattr(obj, "__qualname__", type(obj).__qualname__)
    return f"{getattr(obj, '__module__', '?')}.{name}"


def note_registered(kind: str, name: str, module: str) -> None:
    """Called by the registries on every registration of ``name`` (kind ``attack``,
    ``network`` or ``pipeline``) by code of the module ``module``: while a plug-in is being
    imported, it is recorded as the plug-in's (:attr:`Plugin.registered`), unless ``module``
    is pertlearn's own (built-in names registered because the plug-in imported them first);
    otherwise nothing happens."""
    if _recording is not None and module.partition(".")[0] != "pertlearn":
        _recording.append((kind, name))


def _load() -> _Loaded:
    global _loaded
    loaded = _loaded
    if loaded is not None:
        return loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        if _recording is not None:  # a plug-in looks a name up while being imported
            return _Loaded((), None, False)
        if plugins_disabled():
            _loaded = _Loaded((), None, True)
            return _loaded
        from importlib.metadata import entry_points  # lazy: scanning costs a CLI start

        found = [_import(entry) for entry in sorted(entry_points(group=GROUP), key=_sort_key)]
        failed = [plugin for plugin in found if plugin.error is not None]
        error = None
        if failed:
            more = (
                f" ({len(failed) - 1} more plug-in(s) failed; `pertlearn plugins` lists them)"
                if len(failed) > 1
                else ""
            )
            error = _failure_line(failed[0]) + more
        _loaded = _Loaded(tuple(found), error, False)
        return _loaded


def _sort_key(entry: EntryPoint) -> tuple[str, str]:
    return (entry.name, entry.value)


def _distribution(entry: EntryPoint) -> tuple[str, str]:
    """The name and version of the distribution declaring ``entry`` (empty strings when the
    entry point does not know it)."""
    dist = getattr(entry, "dist", None)
    if dist is None:
        return "", ""
    return str(dist.name or ""), str(dist.version or "")


def _import(entry: EntryPoint) -> Plugin:
    """Import the entry point ``entry`` (and call its function when it names one), recording
    what it registers; an exception becomes the plug-in's ``error``."""
    global _recording
    registered: list[tuple[str, str]] = []
    _recording = registered
    error = None
    try:
        target = entry.load()
        if entry.attr:
            if not callable(target):
                raise TypeError(f"{entry.value} is not callable (name a module or a function)")
            target()
    except Exception as err:
        text = str(err).strip().splitlines()
        error = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    finally:
        _recording = None
    distribution, version = _distribution(entry)
    return Plugin(entry.name, entry.value, distribution, version, tuple(registered), error)


def _failure_line(plugin: Plugin) -> str:
    """The one-line message of a plug-in that failed to load, with how to get past it."""
    where = f" of {plugin.source}" if plugin.distribution else ""
    uninstall = f" (pip uninstall {plugin.distribution})" if plugin.distribution else ""
    return (
        f"plug-in {plugin.name!r} (entry point {plugin.name} = {plugin.value}{where}) failed "
        f"to load: {plugin.error}; fix or uninstall it{uninstall}, or set "
        f"{DISABLE_VARIABLE}=1 to run without plug-ins"
    )


__all__ = [
    "DISABLE_VARIABLE",
    "GROUP",
    "Plugin",
    "PluginError",
    "load_plugins",
    "loaded_distributions",
    "note_registered",
    "plugin_report",
    "plugins_disabled",
    "qualified_name",
]
