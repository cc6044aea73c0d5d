"""What the test bed's three small Django projects share, so that each keeps only its own part.

tests/workerproject  the queue tests' worker processes (started by tests/contrib/workers.py)
soak/project         the soak's worker processes (started by soak/workers.py)
demo                 ``python -m demo``, one process with ``settings.configure()``

settings.py has the common settings and the helpers that build the rest from the
variables each project reads; models.py the row a worker writes per job;
celery_app.py the Celery app of both worker projects. The worker processes find
it as they find their own project: ``cwd`` and ``PYTHONPATH`` are the repository
root.
"""
