"""The fault-injection soak: real workers, real middleboxes, random faults, and a reconciliation.

Run it with ``python -m soak`` (see soak/README.md). Not part of the wheel.
"""
