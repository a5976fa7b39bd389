"""PrepareSource: unpack the sdist safely on the worker and apply the package's patches."""

from __future__ import annotations

from buildbot.process.results import SUCCESS

from wheelwright.common.files import sha256_of
from wheelwright.common.results import Failure, SourcePrepared
from wheelwright.policy.package_settings import SettingsError, check_patch, patches_for
from wheelwright.steps.base import PATCHES_DIR, SDIST_DIR, SRC_DIR, WheelwrightStep, count


class PrepareSource(WheelwrightStep):
    name = "prepare-source"
    description = ["unpacking and patching"]

    async def run(self):
        patches = patches_for(self.farm.settings_dir, self.package, self.version)
        try:
            for patch in patches:
                check_patch(patch)
        except SettingsError as exc:
            return await self.fail(str(exc))
        for patch in patches:
            if not await self.send_file(patch, f"{PATCHES_DIR}/{patch.name}"):
                return await self.fail(f"could not send patch {patch.name} to the worker")
        if patches:
            await self.addCompleteLog("patches", "".join(f"{p}\n" for p in patches))
        result = await self.run_tool(
            "prepare_source",
            SourcePrepared,
            "--sdist",
            f"{SDIST_DIR}/{self.getProperty('source_filename')}",
            "--dest",
            SRC_DIR,
            "--project",
            self.package,
            "--version",
            self.version,
            "--patches",
            PATCHES_DIR,
        )
        if isinstance(result, Failure):
            where = {p.name: p for p in patches}.get(result.patch or "")
            return await self.fail(f"{where}: {result.error}" if where else result.error)
        self.setProperty("patches", result.patches, self.name)
        # what the master sent, by content: a patch edited under the same name is another patch
        self.setProperty("patch_sha256s", {p.name: sha256_of(p) for p in patches}, self.name)
        applied = len(result.patches)
        self.descriptionDone = [f"unpacked, {count(applied, 'patch', 'patches')} applied"]
        return SUCCESS
