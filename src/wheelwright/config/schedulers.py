"""How builds start: the force form (and `wheelwright build` and `rebuild`, which post to it),
new upstream releases of allow-listed projects (changes/upstream_pages.py), and edits to a
package's settings or patches (changes/settings_changes.py)."""

from __future__ import annotations

from pathlib import Path

from buildbot.plugins import util
from buildbot.schedulers.base import ReconfigurableBaseScheduler
from buildbot.schedulers.basic import AnyBranchScheduler
from buildbot.schedulers.forcesched import ForceScheduler, ValidationError
from buildbot.schedulers.triggerable import Triggerable
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from twisted.internet import defer, threads

from wheelwright.changes.settings_changes import CATEGORY as SETTINGS_CHANGE
from wheelwright.changes.upstream_pages import CATEGORY as UPSTREAM_RELEASE
from wheelwright.changes.upstream_pages import SCHEDULER as UPSTREAM_SCHEDULER
from wheelwright.common.lookup import IndexUnreachable
from wheelwright.farm.settings import (
    BOOTSTRAP_SCHEDULER,
    BUMPS,
    FORCE_SCHEDULER,
    YANK_SCHEDULER,
    Farm,
)
from wheelwright.policy.bumps import BumpError, plan_rebuild
from wheelwright.policy.lastgood import ConfigError
from wheelwright.publishing.reproducibility import NothingToVerify, plan_verify
from wheelwright.steps.bootstrap import TRIGGER_PREFIX


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


class PackageChanges(ReconfigurableBaseScheduler):
    """A scheduler mixin: a build of package==version is a change of project `package` at
    revision `version`, as an upstream release is, so that the console and grid views show
    package versions against builders for forced and bootstrap builds too."""

    change_category = "forced"

    @defer.inlineCallbacks
    def addBuildsetForSourceStampsWithDefaults(
        self,
        reason,
        sourcestamps=None,
        waited_for=False,
        properties=None,
        builderNames=None,
        priority=None,
        **kw,
    ):
        package, version = (
            properties.getProperty(p) if properties else None for p in ("package", "version")
        )
        # The force form's codebase is empty (NO_SOURCE): only a real source stamp is kept as given.
        if (
            any(ss.get("revision") or ss.get("repository") for ss in sourcestamps or [])
            or not package
        ):
            return (
                yield super().addBuildsetForSourceStampsWithDefaults(
                    reason, sourcestamps, waited_for, properties, builderNames, priority, **kw
                )
            )
        changeid = yield self.master.data.updates.addChange(
            author=properties.getProperty("owner") or self.name,
            comments=f"{package} {version or 'latest'}: {reason}",
            project=package,
            revision=version or "latest",
            category=self.change_category,
            repository="",
            branch=None,
            codebase="",
            properties={},
        )
        return (
            yield self.addBuildsetForChanges(
                waited_for=waited_for,
                reason=reason,
                changeids=[changeid],
                builderNames=builderNames,
                properties=properties,
                priority=priority,
            )
        )


class BootstrapTriggerable(PackageChanges, Triggerable):
    change_category = "bootstrap"


class BuildScheduler(PackageChanges, ForceScheduler):
    """The force form, where a rebuild of a version our index has gets its bump (a post-release,
    a local version or a build number), and a verify build the version and build number of the
    wheel it checks: decided once for every builder of the request."""

    @defer.inlineCallbacks
    def gatherPropertiesAndChanges(self, collector, **kwargs):
        properties, changeids, sourcestamps = yield super().gatherPropertiesAndChanges(
            collector, **kwargs
        )
        if properties.getProperty("rebuild") and properties.getProperty("verify"):
            yield collector.collectValidationErrors(
                "verify",
                self.refuse,
                "verify rebuilds what was published, and "
                "publishes nothing: choose it or Rebuild, not both",
            )
        elif properties.getProperty("rebuild"):
            bump = yield collector.collectValidationErrors("rebuild", self.plan_rebuild, properties)
            for name, value in (bump.as_properties() if bump else {}).items():
                properties.setProperty(name, value, "Force Build Form")
        elif properties.getProperty("verify"):
            planned = yield collector.collectValidationErrors(
                "verify", self.plan_verify, properties
            )
            for name, value in (planned or {}).items():
                properties.setProperty(name, value, "Force Build Form")
        return properties, changeids, sourcestamps

    @staticmethod
    def refuse(message: str):
        raise ValidationError(message)

    @defer.inlineCallbacks
    def plan_verify(self, properties):
        planned = yield self._plan(properties, "verify", plan_verify)
        return planned

    @defer.inlineCallbacks
    def plan_rebuild(self, properties):
        bump, _ = yield self._plan(
            properties, "rebuild", plan_rebuild, properties.getProperty("bump") or None
        )
        return bump

    @defer.inlineCallbacks
    def _plan(self, properties, what: str, planner, *args):
        """planner(farm, package, version, *args) in a thread, its refusal a ValidationError."""
        package, version = properties.getProperty("package"), properties.getProperty("version")
        if not version:
            raise ValidationError(f"{what} needs the version to {what}")
        farm = Farm.load(Path(self.master.basedir).parent)
        try:
            return (yield threads.deferToThread(planner, farm, package, version, *args))
        except (BumpError, NothingToVerify, IndexUnreachable, ConfigError) as exc:
            raise ValidationError(str(exc)) from None


class BuildersParameter(util.StringParameter):
    """Builder names, separated by spaces or commas (empty: those whose workers run here)."""

    def parse_from_arg(self, s):
        return [name for name in super().parse_from_arg(s).replace(",", " ").split() if name]


NO_SOURCE = [
    util.CodebaseParameter(
        "",
        label="",
        branch=util.FixedParameter(name="branch", default=""),
        revision=util.FixedParameter(name="revision", default=""),
        repository=util.FixedParameter(name="repository", default=""),
        project=util.FixedParameter(name="project", default=""),
    )
]


def bootstrap_schedulers(builder_names: list[str]) -> list:
    """The bootstrap form, and a Triggerable per wheel builder for the builds a bootstrap starts."""
    return [
        *(
            BootstrapTriggerable(name=TRIGGER_PREFIX + name, builderNames=[name])
            for name in builder_names
        ),
        ForceScheduler(
            name=BOOTSTRAP_SCHEDULER,
            label="Bootstrap a tree",
            buttonName="Bootstrap",
            builderNames=["bootstrap"],
            codebases=NO_SOURCE,
            reason=util.StringParameter(
                name="reason", label="Reason", default="bootstrap", size=40
            ),
            properties=[
                util.StringParameter(
                    name="requirements",
                    label="Requirements (PEP 508, separated by spaces)",
                    required=True,
                    size=60,
                ),
                util.TextParameter(
                    name="constraints",
                    label="Constraints (one requirement a line)",
                    cols=60,
                    rows=4,
                ),
                util.IntParameter(
                    name="versions", label="Newest N versions of each (0: one)", default=0
                ),
                BuildersParameter(
                    name="builders", label="Builders (empty: those with workers here)", size=40
                ),
            ],
        ),
    ]


def yank_scheduler() -> ForceScheduler:
    """The yank form: PEP 592, files never deleted; who and why in farm/logs/yank.log."""
    return ForceScheduler(
        name=YANK_SCHEDULER,
        label="Yank or unyank a version",
        buttonName="Yank",
        builderNames=["yank"],
        codebases=NO_SOURCE,
        reason=util.FixedParameter(name="reason", default="yank"),
        properties=[
            PackageNameParameter(name="package", label="Package", required=True, size=30),
            VersionParameter(name="version", label="Version", required=True, size=15),
            util.StringParameter(
                name="file", label="Only this file (empty: every file of the version)", size=50
            ),
            util.StringParameter(name="yank_reason", label="Why (installers show it)", size=50),
            util.BooleanParameter(name="unyank", label="Unyank: take the yank back"),
        ],
    )


def make_schedulers(builder_names: list[str]) -> list:
    # A buildset per change (no tree-stable timer): each release or edit is built on its own.
    from_changes = [
        AnyBranchScheduler(
            name=name,
            change_filter=util.ChangeFilter(category=category),
            treeStableTimer=None,
            builderNames=builder_names,
            reason=reason,
        )
        for name, category, reason in (
            (UPSTREAM_SCHEDULER, UPSTREAM_RELEASE, "released upstream"),
            ("settings-changes", SETTINGS_CHANGE, "settings or patches changed"),
        )
    ]
    return [
        *from_changes,
        BuildScheduler(
            name=FORCE_SCHEDULER,
            label="Build a package",
            buttonName="Build",
            builderNames=builder_names,
            codebases=NO_SOURCE,
            reason=util.StringParameter(
                name="reason", label="Reason", default="forced build", size=40
            ),
            properties=[
                PackageNameParameter(name="package", label="Package", required=True, size=30),
                VersionParameter(name="version", label="Version (empty: latest)", size=15),
                util.BooleanParameter(
                    name="rebuild", label="Rebuild a version we have, published with a bump"
                ),
                util.BooleanParameter(
                    name="verify",
                    label="Verify: build a published version again, publish nothing, "
                    "and compare (on another worker if one is free)",
                ),
                util.ChoiceStringParameter(
                    name="bump",
                    label="Bump (empty: the package's or the farm's default)",
                    choices=["", *BUMPS],
                    default="",
                ),
            ],
        ),
        *bootstrap_schedulers(builder_names),
        yank_scheduler(),
    ]
