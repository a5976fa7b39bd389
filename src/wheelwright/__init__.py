"""Wheelwright: a Buildbot farm that rebuilds Python wheels from source and publishes them to an
index of its own, each wheel traceable to the build, logs and environment that made it.

The folders, each importing only those listed before it (tests/test_layout.py holds it):

- common/: what the master and the worker-side tools agree on; imports nothing of ours.
- worker/: the worker-side tools, one per stage, run in the build's folder; common/ only.
- indexhost/: our index (the static tree and the upload API) and its clients.
- sources/: where sdists come from: the upstream index, git and URL archives, our source
  archive, and the scan each new sdist gets.
- farm/: the farm's settings, its pool table, its processes (`up`, `down`, `doctor`), emulated
  workers and the worker port's TLS.
- bootstrap/: resolving a tree, planning its builds and their order.
- policy/: what may be built and how: the allow-list and review queue, package settings,
  bumps, the pure-wheel gate.
- publishing/: what happens to a wheel once built: provenance, the outbox of kept wheels,
  mirrors, yanks, the rebuild diff, reproducibility.
- changes/, www/, buildbot_patches/: Buildbot's change sources, the web UI's dashboard and
  authentication, and the patches to Buildbot 4.3.0 (each removable alone).
- steps/: one BuildStep per stage of the build job.
- cli/: the `wheelwright` command.
- config/: master.cfg's assembly of all the above; nothing imports it.
"""
