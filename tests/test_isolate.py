"""common.isolate: one call in a fresh process, its output relayed, its result returned."""

import os

import pytest

from common.isolate import ChildError, call_in_child


def child_pid_and_sum(values, *, offset=0):
    print("child says hello")
    return os.getpid(), sum(values) + offset


def child_fails():
    print("about to fail")
    raise ValueError("no such cell")


def test_call_in_child_returns_its_result_and_relays_its_output(capsys):
    pid, total = call_in_child(child_pid_and_sum, [1, 2, 3], offset=10)
    assert pid != os.getpid() and total == 16  # ran elsewhere, with the arguments given
    assert "child says hello" in capsys.readouterr().out


def test_a_failing_child_raises_with_its_last_lines():
    with pytest.raises(ChildError) as info:
        call_in_child(child_fails)
    assert "about to fail" in str(info.value) and "ValueError: no such cell" in str(info.value)
