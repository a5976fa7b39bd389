"""A pure wheel is built exactly once per version, even when every builder of the matrix is asked
at the same moment: the first build of a version goes ahead, and the other builders' requests of
it wait in the queue (holding no worker) until that build knows what it made. A wheel that is not
pure lets them start at once; a pure one lets them start when its build ends, and they find it
published and skip (DownloadSource). A first build that fails lets the next request go first.

Buildbot asks `can_start` (BuilderConfig's canStartBuild) each time it could start a request,
and asks again for every builder when a request completes (the gate listens for that).
"""

from __future__ import annotations

from packaging.utils import canonicalize_name

# The property of a build that found its pure wheel published by another builder's build.
PURE_WHEEL_PUBLISHED = "pure_wheel_published_by"
# A version's key -> the build request that goes first, or OPEN once its wheel is known not pure.
OPEN = 0


class PureWheelGate:
    def __init__(self):
        self.first: dict[tuple, int] = {}
        self.listening = False

    @staticmethod
    def key(properties) -> tuple | None:
        """What one published wheel serves: project, version and bump; verify builds publish nothing."""
        package = properties.getProperty("package")
        if not package or properties.getProperty("verify"):
            return None
        return (
            canonicalize_name(package),
            properties.getProperty("version") or "",
            properties.getProperty("wheel_version"),
            properties.getProperty("build_tag") or 0,
        )

    async def can_start(self, builder, workerforbuilder, request) -> bool:
        key = self.key(request.properties)
        if key is None:
            return True
        holder = self.first.setdefault(key, request.id)
        if holder in (OPEN, request.id):
            return True
        master = builder.master
        if not self.listening:
            # Buildbot itself looks again only at the finished build's own builder.
            self.listening = True
            await master.mq.startConsuming(
                lambda *_: master.botmaster.maybeStartBuildsForAllBuilders(),
                ("buildrequests", None, "complete"),
            )
        done = (await master.data.get(("buildrequests", holder)) or {}).get("complete", True)
        if done:
            self.first[key] = request.id
        return done

    def not_pure(self, master, properties) -> None:
        """The first build made a wheel for its builder alone: the others build theirs now."""
        key = self.key(properties)
        if key is not None and self.first.get(key) != OPEN:
            self.first[key] = OPEN
            master.botmaster.maybeStartBuildsForAllBuilders()


GATE = PureWheelGate()
