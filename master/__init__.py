"""The master side: the farm's settings (farm.py) and pool table (pools.py), the services the steps
use (settings, review queue, source archive, kept wheels, provenance, the pure-wheel gate), change
sources, the web UI's dashboard, and the `wheelwright` command (cli.py over control.py and
restclient.py). Holds every credential. It imports no step: config/ assembles both.
"""
