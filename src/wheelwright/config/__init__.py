"""The Buildbot configuration, on the master: master.cfg calls buildmaster.assemble, which turns
the farm's settings (farm/settings.py) and the pool table (farm/pools.py) into workers and builders
(builders.py, each builder running the steps/ pipeline), schedulers (schedulers.py), change
sources, services and the web UI. It sits on top: it imports the steps and the master's services,
and nothing imports it; `wheelwright up` (farm/control.py) starts a master with its master.cfg.
"""
