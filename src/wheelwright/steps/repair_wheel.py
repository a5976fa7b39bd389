"""RepairWheel: each compiled wheel made portable by auditwheel on the worker (manylinux), with the
shared libraries it needs bundled; what was bundled goes into the provenance."""

from __future__ import annotations

import dataclasses

from buildbot.process.results import FAILURE

from wheelwright.common.results import Failure, WheelsRepaired
from wheelwright.steps.base import DIST_DIR, SRC_DIR, WheelwrightStep


class RepairWheel(WheelwrightStep):
    name = "repair-wheel"
    description = ["repairing (auditwheel)"]

    async def run(self):
        settings = await self.package_settings()
        if settings is None:
            return FAILURE
        result = await self.run_tool(
            "repair_wheel",
            WheelsRepaired,
            "--dist",
            DIST_DIR,
            "--src",
            SRC_DIR,
            *[arg for soname in settings.repair_exclude for arg in ("--exclude", soname)],
            *(["--off", settings.repair_off] if settings.repair_off else []),
            *self.limits,
        )
        if isinstance(result, Failure):
            return await self.fail(result.error)
        before = self.getProperty("wheel_filenames")
        if len(result.wheels) != len(before):
            return await self.fail(
                f"repair reported {len(result.wheels)} wheels; the build made {len(before)}"
            )
        self.setProperty("wheel_filenames", [w.filename for w in result.wheels], self.name)
        self.setProperty("wheel_sha256s", [w.sha256 for w in result.wheels], self.name)
        # in the wheel's provenance: auditwheel's verdict and each library bundled, by wheel
        self.setProperty(
            "repair",
            {
                w.filename: {
                    "verdict": w.verdict,
                    "bundled": [dataclasses.asdict(b) for b in w.bundled],
                }
                for w in result.wheels
            },
            self.name,
        )
        bundled = sorted({b.soname for w in result.wheels for b in w.bundled})
        if settings.repair_off:
            self.descriptionDone = [f"repair off: {settings.repair_off}"]
        else:
            self.descriptionDone = [
                ", ".join(w.filename for w in result.wheels)
                + (f"; bundled {', '.join(bundled)}" if bundled else "")
            ]
        return self.succeeded()
