"""ValidateInstallDeps on the worker.

python -m wheelwright.worker.validate_install_deps install --python PY --wheel W --index URL --env DIR [--import M ...]
    install the wheel and its dependencies in a fresh venv from our index only, then import it
    (with no network: importing runs the package's code).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import zipfile
from pathlib import Path

from packaging.metadata import Metadata
from packaging.utils import canonicalize_name, parse_wheel_filename

from wheelwright.common import sandbox
from wheelwright.common.results import Installed
from wheelwright.common.runtime import ToolError, clean_pip_env, timed
from wheelwright.worker.environments import (
    check_plain_file,
    create_venv,
    environment_bytecode,
    install_binaries,
    marker_environment,
    run_tool,
    supported_tags,
)

EXTENSION_SUFFIXES = (".py", ".pyc", ".so", ".pyd")
MAX_METADATA = 16 << 20


def read_wheel(wheel: Path) -> tuple[Metadata, list[str]]:
    """The wheel's core metadata and its top-level importable names."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(dist_info) != 1:
            raise ToolError(f"{wheel.name} must hold exactly one .dist-info/METADATA")
        meta = Metadata.from_email(_read_capped(zf, dist_info[0]), validate=False)
        # From the files, not top_level.txt, which names namespaces with no file (ruamel.yaml.clib's "ruamel").
        tops = {
            _module_name(n.split("/")[0])
            for n in names
            if not n.split("/")[0].endswith((".dist-info", ".data"))
        }
    return meta, sorted(t for t in tops if t and t.isidentifier())


def public(modules: list[str]) -> list[str]:
    """The modules to import by default: the public ones. A private top-level module (ruamel.yaml.clib's
    _ruamel_yaml) is another package's implementation, and may need that package to import."""
    return [m for m in modules if not m.startswith("_")] or modules


def _read_capped(zf: zipfile.ZipFile, member: str) -> bytes:
    """A small member of the wheel: the package's code made it, so its size is checked first."""
    if zf.getinfo(member).file_size > MAX_METADATA:
        raise ToolError(f"{member} is larger than {MAX_METADATA >> 20} MiB")
    return zf.read(member)


def _module_name(entry: str) -> str:
    for suffix in EXTENSION_SUFFIXES:
        if entry.endswith(suffix):
            return entry[: -len(suffix)].split(".")[0]
    return entry if "." not in entry else ""


def check_tags(python: str, wheel: Path) -> None:
    """The wheel must be one the builder's own Python installs: no wheel tagged for another
    platform or Python comes out of this builder."""
    _, _, _, tags = parse_wheel_filename(wheel.name)
    supported = supported_tags(python)
    # Every tag must fit: a wheel that also claims a platform this builder cannot make is refused.
    # Pure Python tags (py2.py3-none-any) fit every builder.
    if not all(str(t) in supported or (t.abi == "none" and t.platform == "any") for t in tags):
        raise ToolError(
            f"{wheel.name} is tagged {', '.join(sorted(map(str, tags)))}, "
            f"which this builder's Python ({python}) cannot install"
        )


def requires(python: str, wheel: Path) -> list[str]:
    """The wheel's Requires-Dist that apply to the builder's Python and platform (the build-wheel
    tool reports them, so that validating them starts no tool of its own)."""
    check_tags(python, wheel)
    meta, _ = read_wheel(wheel)
    environment = {**marker_environment(python), "extra": ""}
    applicable = [
        r for r in meta.requires_dist or [] if r.marker is None or r.marker.evaluate(environment)
    ]
    return [str(r) for r in applicable]


# Imports each module; a module another project provides, which this wheel does not declare (a
# C helper that imports the package that depends on it), is reported, not raised: one line per
# module, `module missing`. Not JSON: importing json costs 18 ms, a fifth of the check.
IMPORT_SCRIPT = """\
import importlib, sys
report, optional = sys.argv[1], sys.argv[2].split(",") if sys.argv[2] else []
own, found = set(sys.argv[3:]), []
for module in sys.argv[3:]:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        import re
        said = f"{exc.name or ''} {exc}".lower()
        extra = next((n for n in optional if re.search(rf"\\b{re.escape(n)}\\b", said)), None)
        if extra:
            found.append(f"{module} {extra.replace('-', '_')} optional\\n")
        elif isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] not in own:
            found.append(f"{module} {exc.name}\\n")
        else:
            raise
with open(report, "w") as out:
    out.writelines(found)
"""


def install(
    python: str,
    wheel: Path,
    index_url: str,
    env_dir: Path,
    imports: list[str],
    limits: sandbox.Limits = sandbox.Limits(),
    bytecode_for_builds: bool = False,
) -> Installed:
    env_python = create_venv(python, str(env_dir))
    with timed("package install"):
        install_binaries(
            env_python,
            index_url,
            str(wheel.resolve()),
            description=f"installing {wheel.name} and its dependencies from our index",
        )
    if bytecode_for_builds:  # before the import check: the compiling reads what uv installed
        environment_bytecode(python, env_dir)
    meta, tops = read_wheel(wheel)
    modules = imports or public(tops)
    undeclared: dict[str, str] = {}
    skipped: dict[str, str] = {}
    if modules:
        optional = ",".join(optional_imports(meta))
        with tempfile.TemporaryDirectory() as cwd:
            with timed("import check"):
                sandbox.run(
                    [env_python, "-I", "-c", IMPORT_SCRIPT, "undeclared.txt", optional, *modules],
                    write=[Path(cwd)],
                    read=[env_dir.resolve()],
                    cwd=Path(cwd),
                    env=clean_pip_env(),
                    what=f"importing {', '.join(modules)}",
                    limits=limits,
                    pythons=[python],
                )
            undeclared, skipped = _undeclared(Path(cwd) / "undeclared.txt")
    return Installed(
        imported=[m for m in modules if m not in undeclared and m not in skipped],
        undeclared=undeclared,
        skipped=skipped,
    )


def optional_imports(meta: Metadata) -> list[str]:
    """The dependencies the wheel declares only under an extra (black's `d`: aiohttp), by the
    names their modules likely bear: a module that needs one of them is not the wheel's fault."""
    plain: set[str] = set()
    extra: set[str] = set()
    for requirement in meta.requires_dist or []:
        marker = str(requirement.marker or "")
        (extra if "extra" in marker else plain).add(canonicalize_name(requirement.name))
    return sorted({n.replace("-", "_") for n in extra - plain} | (extra - plain))


MAX_IMPORT_REPORT = 1 << 20


def _undeclared(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """What the import script reported (the package's code ran beside it: read with care): the
    modules that need a project the wheel does not declare, and those skipped for a dependency of
    an extra, each with the name it needed."""
    if not os.path.lexists(path):
        raise ToolError("the import test left no readable report")
    check_plain_file(path, MAX_IMPORT_REPORT, "the import test's report")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        raise ToolError("the import test left no readable report") from None
    found: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for line in lines:
        fields = line.split(" ")
        if fields[2:] == ["optional"]:
            fields = fields[:2]
            into = skipped
        else:
            into = found
        if len(fields) != 2 or not all(map(_is_module_name, fields)):
            raise ToolError("the import test's report is not what it writes")
        into[fields[0]] = fields[1]
    return found, skipped


def _is_module_name(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def main(argv=None) -> Installed:
    parser = argparse.ArgumentParser(prog="python -m wheelwright.worker.validate_install_deps")
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install")
    inst.add_argument("--python", required=True)
    inst.add_argument("--wheel", type=Path, required=True)
    inst.add_argument("--index", required=True)
    inst.add_argument("--env", type=Path, required=True)
    inst.add_argument("--import", dest="imports", action="append", default=[])
    inst.add_argument("--limits", help="the sandbox's limits, as JSON")
    inst.add_argument(
        "--bytecode-for-builds",
        action="store_true",
        help="compile the environment's bytecode for the build environments that need the wheel",
    )
    args = parser.parse_args(argv)
    return install(
        args.python,
        args.wheel,
        args.index,
        args.env,
        args.imports,
        sandbox.Limits.parse(args.limits),
        args.bytecode_for_builds,
    )


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
