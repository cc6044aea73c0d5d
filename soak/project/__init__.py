"""The Django project the soak's worker processes run: one job, many routes.

Everything about a run comes from the environment (settings.py), so the plain
loop, the thread pool, Celery and RQ all run the same job on the same routes.
"""
