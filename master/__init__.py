"""The master side: master.cfg's assembly of the pool table (pools.py) into workers, builders and
schedulers (config.py, builders.py, schedulers.py), the services the steps use (settings, review
queue, source archive, kept wheels, provenance), change sources, the web UI's dashboard, and the
`wheelwright` command (cli.py over control.py and restclient.py). Holds every credential.
"""
