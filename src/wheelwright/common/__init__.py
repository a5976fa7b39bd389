"""Code both sides use, importing nothing else of ours: what the master and the worker-side tools
agree on (runtime.py: the result line, frontends, pip's environment), files written whole and
hashed (files.py), wheel names and our index read (lookup.py), what a wheel must be (wheelcheck.py)
and how one is rewritten (wheeledit.py), the sandbox the package's code runs in (sandbox.py),
and the master-worker connection's settings (connection.py).
"""
