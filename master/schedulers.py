"""How builds start: for now, the force form (and `wheelwright build`, which posts to it)."""

from __future__ import annotations

from buildbot.plugins import util
from buildbot.schedulers.forcesched import ForceScheduler, ValidationError
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

FORCE_SCHEDULER = "build"


class PackageNameParameter(util.StringParameter):
    def parse_from_arg(self, s):
        name = super().parse_from_arg(s).strip()
        try:
            canonicalize_name(name, validate=True)
        except Exception:
            raise ValidationError(f"{name!r} is not a valid project name") from None
        return name


class VersionParameter(util.StringParameter):
    def parse_from_arg(self, s):
        text = super().parse_from_arg(s).strip()
        if not text:
            return text
        try:
            return str(Version(text))
        except InvalidVersion:
            raise ValidationError(f"{text!r} is not a valid version (PEP 440)") from None


def make_schedulers(builder_names: list[str]) -> list:
    return [ForceScheduler(
        name=FORCE_SCHEDULER,
        label="Build a package",
        buttonName="Build",
        builderNames=builder_names,
        codebases=[util.CodebaseParameter(
            "", label="", branch=util.FixedParameter(name="branch", default=""),
            revision=util.FixedParameter(name="revision", default=""),
            repository=util.FixedParameter(name="repository", default=""),
            project=util.FixedParameter(name="project", default=""))],
        reason=util.StringParameter(name="reason", label="Reason", default="forced build", size=40),
        properties=[
            PackageNameParameter(name="package", label="Package", required=True, size=30),
            VersionParameter(name="version", label="Version (empty: latest)", size=15),
        ],
    )]
