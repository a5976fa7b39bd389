"""Our BuildSteps, one per stage of the wheel build job, in the order a build runs them.

PrepareSource comes before PrepareBuildEnv: patches may change the build requirements, and the
backend's get_requires_for_build_wheel runs in the patched tree.
"""

from wheelwright.steps.build_wheel import BuildWheel
from wheelwright.steps.download_source import DownloadSource
from wheelwright.steps.prepare_build_env import PrepareBuildEnv
from wheelwright.steps.prepare_source import PrepareSource
from wheelwright.steps.rebuilddiff import RebuildDiff
from wheelwright.steps.repair_wheel import RepairWheel
from wheelwright.steps.update_index import UpdateIndex
from wheelwright.steps.validate_install_deps import ValidateInstallDeps
from wheelwright.steps.verify import VerifyReproducible

PIPELINE = (
    DownloadSource,
    PrepareSource,
    PrepareBuildEnv,
    BuildWheel,
    RepairWheel,
    ValidateInstallDeps,
    UpdateIndex,
    RebuildDiff,
    VerifyReproducible,
)
