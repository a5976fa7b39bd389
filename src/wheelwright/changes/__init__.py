"""Buildbot change sources: new upstream releases (upstream_pages.py, read through the changelog
or conditional page requests, upstream_watch.py) and changes to package settings, in a folder or
in git (settings_changes.py, settings_git.py). Imports common/ and policy/.
"""
