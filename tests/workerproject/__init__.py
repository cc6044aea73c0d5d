"""A Django project for the real worker processes that tests/contrib starts.

Everything about a run comes from the environment (see settings.py), so one
project serves every queue, on the guarded or the stock setup.
"""
