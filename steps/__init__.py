"""Our BuildSteps, one per stage of the wheel build job, in the order a build runs them.

PrepareSource comes before PrepareBuildEnv: patches may change the build requirements, and the
backend's get_requires_for_build_wheel runs in the patched tree.
"""

from wheelwright.steps.buildenv import PrepareBuildEnv
from wheelwright.steps.download import DownloadSource
from wheelwright.steps.publish import UpdateIndex
from wheelwright.steps.rebuilddiff import RebuildDiff
from wheelwright.steps.source import PrepareSource
from wheelwright.steps.validate import ValidateInstallDeps
from wheelwright.steps.verify import VerifyReproducible
from wheelwright.steps.wheel import BuildWheel

PIPELINE = (
    DownloadSource,
    PrepareSource,
    PrepareBuildEnv,
    BuildWheel,
    ValidateInstallDeps,
    UpdateIndex,
    RebuildDiff,
    VerifyReproducible,
)
