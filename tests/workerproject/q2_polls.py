"""Poll django-q2's ORM broker, stock and connguard's, and count connections.

Run by tests/contrib/test_django_q2.py in a process of the worker project
(django_q must be an installed app), with CONN_MAX_AGE = 0 on "default".
Prints, as JSON, the connections each broker opened over the same polls.
"""

from __future__ import annotations

import json
import sys

import django

django.setup()

from django.db import connections, transaction  # noqa: E402
from django_q.brokers.orm import ORM  # noqa: E402

import connguard.contrib.django_q2  # noqa: E402
from tests.workerproject import work  # noqa: E402

POLLS = 5


def polls(broker_class: type[ORM]) -> int:
    connections["default"].close()
    before = work.opened["default"]
    broker = broker_class(list_key="connguard-polls")
    for _ in range(POLLS):
        broker.dequeue()  # an empty queue: the pusher's idle loop
    # A broker access inside a transaction must leave it alone.
    with transaction.atomic():
        broker.queue_size()
        broker.queue_size()
    return work.opened["default"] - before


if __name__ == "__main__":
    counts = {"stock": polls(ORM), "connguard": polls(connguard.contrib.django_q2.ORM)}
    json.dump(counts, sys.stdout)
