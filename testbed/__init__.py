"""Throwaway database servers and network helpers for connguard's tests, demo and benchmarks.

Not shipped in the wheel.
"""
