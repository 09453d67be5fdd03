"""Write ``docs/config-reference.md`` from the pydantic config models.

Usage: ``python scripts/gen_config_reference.py`` (writes the file) or ``--check`` (exit 1 when
the committed file differs). ``tests/integration/test_project.py`` runs the check, so the
reference cannot drift from the code.

Generic on purpose: it documents ``pertlearn.experiments.config.ExperimentConfig`` and every
subclass of it that is defined once ``pertlearn`` is imported (one per pipeline), walking each
class's ``model_json_schema()``: every key (dotted for sections), its type, default, bounds and
description.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "docs" / "config-reference.md"

HEADER = """\
# Config reference

Generated from the pydantic models by `scripts/gen_config_reference.py`; do not edit by hand
(`tests/integration/test_project.py` fails when this file and the code disagree). Run
`python scripts/gen_config_reference.py` after changing a config model.

A config is a TOML file, a preset (`pertlearn presets`) or a Python dict; any key can be
overridden with `--set key=value` (values parse as TOML) or `overrides=["key=value"]` in
`pertlearn.load_config`. A key that the chosen pipeline does not use, an unknown key, a wrong
type or an impossible value stops with one line naming the key. Dotted keys below are
sections: `train_f.lr` is `lr` in the `[train_f]` table. In an optional section (default
none), "required" marks a key to give whenever the section is given, and "—" a key whose
default is built when the section is given (not a fixed value).

Keys that name a file or folder, {path_keys}:
a relative path in a config file (a preset file, a sweep spec) is read relative to that file's
folder, one given with `--set` or from Python relative to the current directory; the validated
config, and so a run directory's `config.json`, holds it absolute.
"""


def config_classes() -> list[type[Any]]:
    """``ExperimentConfig`` and the config classes of the built-in pipelines (in definition
    order, depth first); classes defined elsewhere (a user's, a test's) are left out."""
    import pertlearn.experiments.pipelines  # noqa: F401  (defines and registers every built-in config class)
    from pertlearn.experiments import config

    base = config.ExperimentConfig
    found: list[type[Any]] = []

    from pertlearn.experiments.pipeline import PIPELINES

    built_in = {
        p.config_class
        for p in PIPELINES.values()
        if p.config_class.__module__.startswith("pertlearn.")
    }

    def walk(cls: type[Any]) -> None:
        if cls not in found and (cls is base or cls in built_in):
            found.append(cls)
        for sub in cls.__subclasses__():
            walk(sub)

    walk(base)
    if len(found) > 1:
        found = found[1:]
    first = base.model_fields["pipeline"].default if "pipeline" in base.model_fields else None

    def order(cls: type[Any]) -> tuple[bool, str]:
        field = cls.model_fields.get("pipeline")
        name = str(field.default) if field is not None else cls.__name__
        return (name != first, name)

    return sorted(found, key=order)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return defs[ref.rsplit("/", 1)[-1]]
    return schema


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in schema:
        return "section"
    if "enum" in schema:
        return " / ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    if "anyOf" in schema:
        return " or ".join(dict.fromkeys(_type(s, defs) for s in schema["anyOf"]))
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, dict) and items:
            return f"list of {_type(items, defs)}"
        prefix = schema.get("prefixItems")
        if prefix:
            return "[" + ", ".join(_type(s, defs) for s in prefix) + "]"
        return "list"
    if kind == "object":
        return "table"
    names = {"string": "string", "integer": "integer", "number": "float", "boolean": "bool"}
    return names.get(str(kind), "none" if kind == "null" else str(kind or "any"))


def _bounds(schema: dict[str, Any]) -> str:
    parts = []
    for key, sign in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
        ("minLength", "length ≥"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
    ):
        if key in schema:
            parts.append(
                f"{sign} {schema[key]:g}"
                if isinstance(schema[key], float)
                else f"{sign} {schema[key]}"
            )
    for sub in schema.get("anyOf", []):
        inner = _bounds(sub)
        if inner:
            parts.append(inner)
    return ", ".join(parts)


_MISSING = object()


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def _default(field: dict[str, Any], key: str, defaults: Any, *, required: bool = False) -> str:
    if "default" in field:
        value = field["default"]
    elif required:  # no default: the key must be given (in an optional section: once it is)
        return "required"
    elif defaults is None:  # a key of an optional section that is unset by default
        return "—"
    else:
        value = _lookup(defaults, key)
    if value is _MISSING:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, dict) and len(json.dumps(value)) > 40:
        return "(see keys)"
    return "`" + json.dumps(value, ensure_ascii=False) + "`"


def _section_ref(field: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema a field holds (directly or as ``X | None``), if any."""
    candidates = [field, *field.get("anyOf", []), *field.get("allOf", [])]
    for candidate in candidates:
        if "$ref" in candidate:
            target = _resolve(candidate, defs)
            if "properties" in target:
                return target
    return None


def _rows(
    schema: dict[str, Any], defs: dict[str, Any], prefix: str, defaults: Any, depth: int = 0
) -> list[str]:
    rows: list[str] = []
    for name, field in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        section = _section_ref(field, defs)
        description = field.get("description", "")
        if section is not None and depth < 4:
            optional = any(s.get("type") == "null" for s in field.get("anyOf", []))
            title = section.get("title", "")
            summary = (section.get("description") or "").split("\n\n")[0]
            kind = f"section ({title}{', optional' if optional else ''})"
            default = _default(field, key, defaults) if optional else ""
            rows.append(
                f"| `{key}` | {_cell(kind)} | {default} | {_cell(description or summary)} |"
            )
            present = _lookup(defaults, key) not in (None, _MISSING)
            sub = defaults if defaults is not None and (not optional or present) else None
            rows.extend(_rows(section, defs, f"{key}.", sub, depth + 1))
            continue
        bounds = _bounds(field)
        text = description + (f" ({bounds})" if bounds else "")
        default = _default(field, key, defaults, required=name in schema.get("required", ()))
        rows.append(f"| `{key}` | {_cell(_type(field, defs))} | {_cell(default)} | {_cell(text)} |")
    return rows


def render() -> str:
    from pertlearn.experiments.config_tree import PATH_KEYS

    parts = [HEADER.format(path_keys=", ".join(f"`{key}`" for key in PATH_KEYS))]
    for cls in config_classes():
        schema = cls.model_json_schema()
        defs = schema.get("$defs", {})
        pipeline = schema.get("properties", {}).get("pipeline", {}).get("default")
        title = f'`pipeline = "{pipeline}"`: {cls.__name__}' if pipeline else cls.__name__
        parts.append(f"## {title}\n")
        doc = " ".join((cls.__doc__ or "").split())
        if doc:
            parts.append(doc + "\n")
        parts.append("| key | type | default | meaning |\n| --- | --- | --- | --- |")
        try:
            defaults = cls().model_dump(mode="json")
        except Exception:  # a config class without defaults for every key
            defaults = {}
        parts.append("\n".join(_rows(schema, defs, "", defaults)) + "\n")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run python scripts/gen_config_reference.py")
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
