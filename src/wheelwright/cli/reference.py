"""The reference pages in docs/reference/, made from the code so they cannot drift from it: the
command line (from the parser itself) and farm.json (from the Farm dataclass and the comments
above its fields). `python -m wheelwright.cli.reference docs/reference` writes them;
tests/test_layout.py checks the committed pages are current.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import sys
from pathlib import Path

from wheelwright.cli.main import build_parser
from wheelwright.farm.settings import Farm
from wheelwright.policy.package_settings import FROMAGER_KEYS, PackageSettings

WIDTH = "100"  # argparse wraps at $COLUMNS: fixed, so the page is the same on every terminal


def cli_page() -> str:
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        parts = [
            "# Command reference\n",
            "Made by `python -m wheelwright.cli.reference docs/reference` from the parser itself.\n",
            _usage("wheelwright", parser),
        ]
        parts += [_usage(f"wheelwright {name}", p) for name, p in _commands(parser)]
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
    return "\n".join(parts)


def _commands(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + name, sub
                yield from _commands(sub, prefix + name + " ")


def _usage(title: str, parser: argparse.ArgumentParser) -> str:
    text = parser.format_help()
    return f"## {title}\n\n```text\n{text.rstrip()}\n```\n"


def farm_json_page() -> str:
    said = _comments()
    rows = []
    for field in dataclasses.fields(Farm):
        if field.name in ("root", "from_environment"):  # not settings: where and whence
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING and field.name != "upstream":
            default = field.default_factory()
        else:
            default = "pip's default index" if field.name == "upstream" else ""
        if isinstance(default, str) and default.startswith(str(Path.home()) + "/"):
            default = "~" + default[len(str(Path.home())) :]  # this machine's home: any user's
        shown = json.dumps(default, default=str)
        what = said.get(field.name, "").replace("|", "\\|")
        rows.append(f"| `{field.name}` | `{shown}` | {what} |")
    return (
        "# farm.json reference\n\n"
        "Made by `python -m wheelwright.cli.reference docs/reference` from the `Farm` dataclass\n"
        "(`src/wheelwright/farm/settings.py`). `wheelwright up` writes `farm.json` and keeps what is\n"
        "in it; `WHEELWRIGHT_<SETTING>` in the environment wins over it and is never written to it.\n\n"
        "| setting | default | what |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )


def package_settings_page() -> str:
    """The keys of a package's settings file, from the model that checks them."""
    said = _comments(PackageSettings)
    schema = PackageSettings.model_json_schema()["properties"]
    rows = []
    for name, field in PackageSettings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        kind = _kind(schema[name])
        what = said.get(name, "").replace("|", "\\|")
        rows.append(f"| `{name}` | `{kind}` | `{json.dumps(default)}` | {what} |")
    unsupported = ", ".join(f"`{key}`" for key in FROMAGER_KEYS)
    return (
        "# Package settings reference\n\n"
        "Made by `python -m wheelwright.cli.reference docs/reference` from the `PackageSettings`\n"
        "model (`src/wheelwright/policy/package_settings.py`), which checks each file whole: an\n"
        "unknown key (with the closest known one) or a wrong type fails the builds of that package\n"
        "naming the file, the key and the value. Its JSON schema: `package-settings.schema.json`.\n"
        f"fromager's keys this farm does not act on yet are refused by name: {unsupported}.\n\n"
        "| key | type | default | what |\n| --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )


def _kind(prop: dict) -> str:
    """A JSON schema's type, as a reader says it."""
    if "enum" in prop:
        return " or ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    if "anyOf" in prop:
        return " or ".join(_kind(option) for option in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_kind(prop.get('items', {}))}"
    if kind == "object":
        values = prop.get("additionalProperties")
        return f"mapping to {_kind(values)}" if isinstance(values, dict) else "mapping"
    if "minimum" in prop:
        return f"{kind} >= {prop['minimum']}"
    return kind


def _comments(cls: type = Farm) -> dict[str, str]:
    """The comment above each field of a class; a comment goes to every field after it, up to
    the next comment."""
    found: dict[str, str] = {}
    comment: list[str] = []
    in_comment = False
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment = [*comment, stripped[1:].strip()] if in_comment else [stripped[1:].strip()]
            in_comment = True
            continue
        in_comment = False
        field = re.match(r"(\w+): ", stripped)
        if field:
            found[field.group(1)] = " ".join(comment)
    return found


def main(argv: list[str] | None = None) -> None:
    out = Path((argv or sys.argv[1:] or ["docs/reference"])[0])
    out.mkdir(parents=True, exist_ok=True)
    (out / "cli.md").write_text(cli_page())
    (out / "farm-json.md").write_text(farm_json_page())
    (out / "package-settings.md").write_text(package_settings_page())
    (out / "package-settings.schema.json").write_text(package_settings_schema())


def package_settings_schema() -> str:
    return json.dumps(PackageSettings.model_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    main()
