"""The `wheelwright` command (main.py, started by entry.py) and its client of the master's REST
API (restclient.py). Imports every folder but steps/ and config/; nothing imports it but its entry
point.
"""
