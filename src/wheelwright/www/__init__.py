"""The web UI's own parts beside Buildbot's: the packages dashboard (dashboard.py, templates/)
and the users who may steer the farm (auth.py). Imports common/, indexhost/, sources/, farm/ and
policy/.
"""
