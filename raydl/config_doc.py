"""`raydl config EXPERIMENT`: the fully resolved experiment as a YAML file to start from.

Every field of every section is written out with its value, and a comment with its
one-line help and its default, so a user can save the output, edit it and run it with
`raydl run FILE`. A `tune:` section (read by `raydl tune` only) follows as it was given.
Loading the output gives back the same experiment (tests/unit/test_config_doc.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml


def flow(value: Any) -> str:
    """`value` as one line of YAML (flow style), the way `safe_load` reads it back."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False)
    return text.removesuffix("\n...\n").strip()


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _section(obj: Any, path: str, kind_defaults: Mapping[str, Any], lines: list[str]) -> None:
    pad = "  " * path.count(".")
    for field in dataclasses.fields(obj):
        value, text = getattr(obj, field.name), field.metadata.get("help", "")
        dotted = path + field.name
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{field.name}:" + (f"  # {text}" if text else ""))
            _section(value, dotted + ".", kind_defaults, lines)
            continue
        # the kind's own default where it has one (a2c: algo.asynchronous false)
        default = kind_defaults.get(dotted, _default(field))
        shown = f"default {flow(default)}" if default is not dataclasses.MISSING else "required"
        note = f"{text} ({shown})" if text else f"({shown})"
        lines.append(f"{pad}{field.name}: {flow(value)}  # {note}")


def commented_yaml(cfg: Any, title: str, tune: dict[str, Any] | None = None) -> str:
    """The experiment `cfg` (a loaded experiment dataclass) as commented YAML."""
    lines = [f"# {title}",
             "# Every field with its value, its default and what it does. Edit, then: raydl run FILE"]
    from raydl import registry

    _section(cfg, "", registry.spec(cfg.kind).defaults, lines)
    if tune is not None:
        lines.append("# tune: read by `raydl tune` only")
        lines.append(yaml.safe_dump({"tune": tune}, sort_keys=False).rstrip())
    return "\n".join(lines) + "\n"
