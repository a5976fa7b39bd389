"""The farm itself: its settings and addresses (settings.py, farm.json), the pool table
(pools.py: workers and builders as rows), its processes (control.py: `up`, `down`), what each pool
needs beyond Python (doctor.py), emulated workers and their roots (emulation.py, roots.py), the
worker port's TLS (tls.py) and the embedded database (database.py). Imports common/, indexhost/
and sources/.
"""
