"""What may be built, and how: the allow-list and review queue (review.py), package settings in
fromager's layout and the last good copy of them (package_settings.py, lastgood.py), rebuild
bumps (bumps.py) and the pure-wheel gate (puregate.py). Imports common/, sources/, farm/ and
bootstrap/.
"""
