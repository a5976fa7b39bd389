"""What becomes of a wheel once built: its provenance (provenance.py), the outbox of wheels the
index did not take yet (outbox.py), mirrors (mirrors.py), yanks (yanks.py), the difference between
two builds (rebuilddiff.py) and reproducibility checks (reproducibility.py). Imports common/,
indexhost/ and farm/.
"""
