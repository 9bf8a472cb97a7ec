"""The test helpers for subprocesses: the line reader keeps what it read ahead, ``stop`` kills
what lingers, and only the process (or the group it leads), never the test's own group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from tests.processes import communicate, read_line, read_until, stop, wait_for_line

pytestmark = pytest.mark.timeout(60)


def _python(code: str, *, text: bool = True, new_session: bool = False) -> subprocess.Popen[Any]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
        start_new_session=new_session,
    )


@pytest.mark.parametrize("text", [False, True], ids=["bytes", "text"])
def test_lines_written_at_once_are_returned_one_by_one(text: bool) -> None:
    with _python("import sys; sys.stdout.write('a\\nb: 7\\nc\\nd\\nlast\\n')", text=text) as proc:
        assert read_line(proc) == "a"
        assert wait_for_line(proc, r"b: (\d+)")[1] == "7"
        assert read_until(proc, "d") == ["c", "d"]
        assert read_line(proc) == "last"
        with pytest.raises(AssertionError, match="stdout closed"):
            read_line(proc)
        assert stop(proc) == 0


def test_communicate_starts_with_what_the_reader_read_ahead() -> None:
    with _python("import sys; sys.stdout.write('one\\ntwo\\nthree\\n'); sys.stderr.write('err')") as proc:
        assert wait_for_line(proc, "^one$")[0] == "one"
        assert communicate(proc, timeout=30) == ("two\nthree\n", "err")
    assert proc.returncode == 0


def test_a_missing_line_names_what_was_awaited_and_what_came() -> None:
    with _python("print('hello')") as proc:
        with pytest.raises(AssertionError, match=r"no line containing 'bye'.*'hello'"):
            read_until(proc, "bye")
        assert stop(proc) == 0


# Ignores SIGTERM and says so once it does, naming a child that holds its stdout open.
_STUBBORN = """
import signal, subprocess, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
child.wait()
"""


def test_a_group_leader_that_lingers_is_killed_with_its_group() -> None:
    with _python(_STUBBORN, new_session=True) as proc:
        read_line(proc)
        assert stop(proc, timeout=0.2) == -signal.SIGKILL
        # Only the child still held the pipe: end of file means it was killed too.
        with pytest.raises(AssertionError, match="stdout closed"):
            read_line(proc, timeout=30)


def test_a_process_in_our_group_is_killed_alone() -> None:
    with _python(_STUBBORN) as proc:
        child = int(read_line(proc))
        try:
            assert stop(proc, timeout=0.2) == -signal.SIGKILL  # and this test still runs
        finally:
            os.kill(child, signal.SIGKILL)
