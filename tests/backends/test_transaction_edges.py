"""Errors inside atomic() say what is known, and the same on every vendor."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections, transaction

import connguard
from connguard.exceptions import TransactionLost
from tests.backends.test_safety import entries, insert
from tests.helpers import ALIAS, kill, select_one, server_id

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def test_killed_while_idle_in_atomic_is_transaction_lost(vendor: str, servers: Any) -> None:
    """The session ended before COMMIT was sent: nothing was committed, certainly."""
    alias = ALIAS[vendor]
    wrapper = connections[alias]
    with pytest.raises(TransactionLost) as info, transaction.atomic(using=alias):
        insert(wrapper, "idle-killed")
        dead = server_id(wrapper)
        kill(servers, vendor, wrapper)  # waits until our socket shows the close
    assert type(info.value) is TransactionLost, "not CommitOutcomeUnknown: COMMIT was never sent"
    assert "before COMMIT was sent" in str(info.value)
    # A COMMIT whose reply is lost in flight stays CommitOutcomeUnknown:
    # test_safety.py::test_commit_reply_lost_is_commit_outcome_unknown.
    assert entries(vendor, "idle-killed") == 0
    assert connguard.stats(alias)["transactions_lost"] == 1
    assert select_one(wrapper) == 1
    assert server_id(wrapper) != dead


def test_close_inside_atomic_then_a_statement(vendor: str) -> None:
    """Both vendors raise TransactionLost, before anything is sent."""
    alias = ALIAS[vendor]
    wrapper = connections[alias]
    select_one(wrapper)
    with pytest.raises(TransactionLost) as info, transaction.atomic(using=alias):
        insert(wrapper, "closed-in-block")
        wrapper.close()
        insert(wrapper, "closed-in-block")
    assert "closed inside the transaction" in str(info.value)
    assert entries(vendor, "closed-in-block") == 0
    assert select_one(wrapper) == 1  # the first use after the block reconnects
