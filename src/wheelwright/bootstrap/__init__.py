"""Bootstrap planning: a tree resolved with resolvelib from our index and the upstream's sdists,
its build requirements planned per package, and the order it is built in (plan.py). The driver is
the BootstrapTree step (steps/bootstrap.py). Imports common/, sources/ and farm/.
"""
