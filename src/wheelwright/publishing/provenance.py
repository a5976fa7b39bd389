"""The provenance a published wheel carries inside its .dist-info, so that a wheel found anywhere
(a venv, a cache, a colleague's disk) names the build that made it:

    <name>-<version>.dist-info/wheelwright/provenance.json   the build, its worker, the sdist, ...
    <name>-<version>.dist-info/sboms/build-environment.cdx.json
                                                            PEP 770: the build environment, CycloneDX

The master writes them (common/wheeledit.py keeps RECORD true) just before publishing: the facts
are the master's, and the worker that built the wheel never holds them.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from wheelwright.common.bounded import open_zip, zip_member
from wheelwright.common.wheeledit import rewrite

PROVENANCE = "wheelwright/provenance.json"
SBOM = "sboms/build-environment.cdx.json"
MAX_CARRIED = 4 << 20


def pinned(freeze: str) -> list[tuple[str, str]]:
    """(name, version) for each `name==version` line of a pip freeze."""
    found = []
    for line in freeze.splitlines():
        try:
            req = Requirement(line.strip())
        except InvalidRequirement:
            continue
        versions = [s.version for s in req.specifier if s.operator == "=="]
        if len(versions) == 1:
            found.append((canonicalize_name(req.name), versions[0]))
    return sorted(found)


def build_environment_sbom(project: str, version: str, freeze: str, provenance: dict) -> bytes:
    """A CycloneDX document of what the wheel was built with: its build environment's packages
    (scope excluded: not in the wheel, but what made it)."""
    # Imported here: cyclonedx takes a quarter of `wheelwright`'s start, which never needs it.
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentScope, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    def _purl(name: str, version: str) -> PackageURL:
        return PackageURL(type="pypi", name=name, version=version)

    subject = Component(
        name=canonicalize_name(project),
        version=version,
        type=ComponentType.LIBRARY,
        purl=_purl(canonicalize_name(project), version),
        bom_ref=f"{project}=={version}",
    )
    # Named and dated by the build, not by the clock: the document is a fact about that build.
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"{provenance.get('build_url')}#{project}=={version}")
    bom = Bom(
        serial_number=serial,
        metadata=BomMetaData(
            component=subject,
            timestamp=datetime.fromtimestamp(provenance.get("published_at", 0), timezone.utc),
        ),
    )

    def made_with(name: str, version: str, purl: PackageURL, ref: str) -> Component:
        # in the build environment, not in the wheel
        return Component(
            name=name,
            version=version,
            type=ComponentType.LIBRARY,
            scope=ComponentScope.EXCLUDED,
            purl=purl,
            bom_ref=ref,
        )

    used = [made_with(n, v, _purl(n, v), f"{n}=={v}") for n, v in pinned(freeze)]
    # and the system packages the build needed (the package's settings)
    used += [
        made_with(
            n, v, PackageURL(type="deb", namespace="debian", name=n, version=v), f"deb:{n}=={v}"
        )
        for n, v in sorted((provenance.get("system_packages") or {}).items())
    ]
    bom.components.update(used)
    bom.register_dependency(subject, used)  # what the wheel was made with, not what it runs with
    return JsonV1Dot6(bom).output_as_string(indent=2).encode()


def embed(wheel: Path, out_dir: Path, provenance: dict, freeze: str) -> Path:
    """A copy of wheel in out_dir that carries its provenance and its build environment's SBOM."""
    project, version = provenance["package"], provenance["wheel_version"]
    carried = {**provenance, "freeze": pinned(freeze)}
    return rewrite(
        wheel,
        out_dir,
        add={
            PROVENANCE: json.dumps(carried, indent=2, sort_keys=True).encode(),
            SBOM: build_environment_sbom(project, version, freeze, provenance),
        },
    )


def carried_by(wheel: Path) -> dict | None:
    """The provenance a wheel file carries (None if it carries none)."""
    with open_zip(wheel) as zf:
        for info in zf.infolist():
            top, _, rest = info.filename.partition("/")
            if top.endswith(".dist-info") and rest == PROVENANCE and info.file_size <= MAX_CARRIED:
                return json.loads(zip_member(zf, info.filename, MAX_CARRIED))
    return None


def is_ours(member: str) -> bool:
    """Whether a wheel member is one the master added (not the build's)."""
    top, _, rest = member.partition("/")
    return top.endswith(".dist-info") and rest in (PROVENANCE, SBOM, "RECORD")
