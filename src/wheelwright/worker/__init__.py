"""The worker side: one tool per stage (`python -m wheelwright.worker.<tool>`), run by its step
as a command on the worker, in the build's folder. A tool takes its inputs on its command line,
runs the package's code only in the sandbox (common/sandbox.py), and prints one result
(common/results.py) for its step to check. It imports only common/: nothing of the master's.
"""
