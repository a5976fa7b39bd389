"""Where sdists come from, read as hostile: the upstream index's pages and files (upstream.py,
bounded and host-checked), archives made from git and URLs (vcs.py), our own archive of every sdist
we built from (archive.py), and the scan a new sdist gets before it is built (scan.py). Imports
common/ and indexhost/.
"""
