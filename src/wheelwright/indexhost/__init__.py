"""The index host: a static tree of our wheels and sources (store.py) and the upload API that
writes it (server.py), its accounts (accounts.py), and the master's client of it (upload.py). Runs
apart from the master in production (docs/deploy.md); imports only common/.
"""
