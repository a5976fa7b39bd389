"""Patches to Buildbot 4.3.0, each in a module of its own and removable alone: a new build
request goes to the distributor at once (start_now.py), REST responses are written on the
reactor's thread (rest_write.py), and a build's plain properties are written after each step
(build_properties.py). Imports nothing of ours but common/.
"""
