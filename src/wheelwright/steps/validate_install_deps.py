"""ValidateInstallDeps: the wheel's Requires-Dist must name only projects we know (in our index or
the allow-list); a new one goes to the review queue and fails the build. Then the wheel is
installed from our index only into a fresh venv, and imported."""

from __future__ import annotations

from buildbot.process.results import FAILURE
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from twisted.internet import threads

from wheelwright.common.lookup import IndexUnreachable, short_of
from wheelwright.common.results import Failure, Installed
from wheelwright.policy.lastgood import ConfigError
from wheelwright.policy.review import allowlist_for, queue_for_review
from wheelwright.steps.base import DIST_DIR, TEST_ENV_DIR, WheelwrightStep, count, publishing

# A build property (set by a bootstrap): other packages of the tree need this one to build, so
# the worker compiles its validation environment's bytecode for their build environments, which
# hold the same packages (worker/environments.py environment_bytecode).
BUILD_REQUIREMENT = "build_requirement"


def classify(requirements: list[str], allowlist: set[str], index_url: str) -> dict[str, list[str]]:
    """Sort requirements into the projects we do not know, those allow-listed but not built yet,
    and those our index has in no version that satisfies them."""
    missing, unsatisfiable = short_of(index_url, [Requirement(r) for r in requirements])
    return {
        "unknown": [p for p in missing if p not in allowlist],
        "unbuilt": [p for p in missing if p in allowlist],
        "unsatisfied": unsatisfiable,
    }


def _unmarked(requirement: str) -> str:
    """The requirement without its marker (it was evaluated for this builder already)."""
    parsed = Requirement(requirement)
    parsed.marker = None
    return str(parsed)


class ValidateInstallDeps(WheelwrightStep):
    name = "validate-install-deps"
    description = ["validating dependencies"]

    def __init__(self, **kwargs):
        super().__init__(doStepIf=publishing, **kwargs)

    async def run(self):
        settings = await self.package_settings()
        if settings is None:
            return FAILURE
        needed = self.install_requires()
        try:
            allowlist = await self.read_config("allowlist", allowlist_for)
        except ConfigError as exc:
            return await self.fail(str(exc))
        problem = await self.not_in_our_index(needed, allowlist)
        if problem:
            return await self.fail(problem)
        skipped: dict[str, str] = {}
        for wheel in self.getProperty("wheel_filenames"):
            result = await self.install(wheel, settings)
            if isinstance(result, Failure):
                return await self.fail(result.error)
            skipped.update(result.skipped)
        self.setProperty("imports_skipped", skipped, self.name)  # in the wheel's provenance
        self.descriptionDone = [
            f"{count(len(needed), 'dependency', 'dependencies')} known; installed and imported from our index"
            + (f"; {count(len(skipped), 'module')} of an extra not imported" if skipped else "")
        ]
        return self.succeeded()

    def install_requires(self) -> dict[str, str]:
        """The wheels' install requirements (as build-wheel read them), by project, but the
        package's own; kept as a property."""
        needed: dict[str, str] = {}
        for requirements in self.getProperty("wheel_requires"):  # per wheel
            for requirement in requirements:
                needed.setdefault(canonicalize_name(Requirement(requirement).name), requirement)
        needed.pop(canonicalize_name(self.package), None)
        self.setProperty("install_requires", sorted(needed.values()), self.name)
        return needed

    async def not_in_our_index(self, needed: dict[str, str], allowlist) -> str | None:
        """Why the requirements cannot all be installed from our index, or None: an unknown
        project is queued for review; what is missing is named for a bootstrap to build."""
        try:
            found = await threads.deferToThread(
                classify, sorted(needed.values()), allowlist, self.farm.index_url
            )
        except IndexUnreachable as exc:
            return str(exc)
        unknown, unbuilt, unsatisfiable = found["unknown"], found["unbuilt"], found["unsatisfied"]
        short = {
            *unknown,
            *unbuilt,
            *(canonicalize_name(Requirement(u.split(" (")[0]).name) for u in unsatisfiable),
        }
        if short:  # a bootstrap plans and builds them (an sdist's PKG-INFO need not list them), then this again
            self.setProperty(
                "missing_install_requires", sorted(_unmarked(needed[p]) for p in short), self.name
            )
        build_url = await self.build_url()
        for project in unknown:
            await threads.deferToThread(
                queue_for_review,
                self.farm.review_queue,
                project,
                f"install-time dependency of {self.package} {self.version}",
                build_url,
                waiting=self.waiting_build,
            )
        if unknown:
            return (
                f"install-time dependency {', '.join(unknown)} is not in the allow-list or the "
                "index: queued for review"
            )
        if unbuilt:
            return f"install-time dependency {', '.join(unbuilt)} is allow-listed but not built yet"
        if unsatisfiable:
            return (
                f"install-time dependency {'; '.join(unsatisfiable)} is not satisfied by our index"
            )
        return None

    async def install(self, wheel: str, settings):
        """The wheel installed from our index into a fresh environment and its modules imported,
        on the worker; what was skipped or imported without a declaration, logged."""
        imports = [arg for m in settings.imports for arg in ("--import", m)]
        result = await self.run_tool(
            "validate_install_deps",
            Installed,
            "install",
            "--python",
            self.python,
            "--wheel",
            f"{DIST_DIR}/{wheel}",
            "--index",
            self.getProperty("index_url"),
            "--env",
            TEST_ENV_DIR,
            *imports,
            *(["--bytecode-for-builds"] if self.getProperty(BUILD_REQUIREMENT) else []),
            *self.limits,
        )
        if isinstance(result, Failure):
            return result
        if result.skipped:
            await self.addCompleteLog(
                "optional-imports",
                "".join(
                    f"{module} not imported: it needs {needs}, which {wheel} declares only "
                    "under an extra\n"
                    for module, needs in sorted(result.skipped.items())
                ),
            )
        if result.undeclared:
            self.warned = True
            await self.addCompleteLog(
                "undeclared-imports",
                "".join(
                    f"{module} imports {missing}, which {wheel} does not declare: imported without it\n"
                    for module, missing in sorted(result.undeclared.items())
                ),
            )
        return result
