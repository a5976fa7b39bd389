"""The index host: a static tree of our wheels and sources (store.py) and the upload API that
writes it (server.py); the master's clients of it (upload.py, and upstream.py for the upstream
index). Runs apart from the master in production (docs/deploy.md); imports only common/.
"""
