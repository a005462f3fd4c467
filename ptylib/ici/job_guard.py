"""Run one job command as the leader of its own process group and end that whole group if the orchestrator dies.

Started by :func:`ptylib.ici.jobs.start_job` as ``python -I -S job_guard.py <orchestrator pid> <command...>``
in a new process group, it asks Linux for a signal when its parent dies (``PR_SET_PDEATHSIG``; the
parent is the orchestrator thread that started it) and answers that signal by killing its process
group, so the job's script and everything the script started (which stay in the group) end with the
flow even after ``kill -9`` of the flow. It starts the command, waits for it and ends the same way
(its exit code, or the same signal). SIGTERM and SIGINT do not end the guard itself: the runner's
timeout signals the whole group, and the guard waits for the command to react.

Standard library only, and nothing imported at module level that the runner does not need: the
runner reads :data:`DEATH_SIGNAL` from it. Linux only; elsewhere the group lives on until the next
run of the run root ends it (:func:`ptylib.ici.jobs.end_stale_jobs`).
"""

from __future__ import annotations

import os
import signal
import sys

#: Sent to the guard when the orchestrator thread that started it dies (a signal nothing else sends).
DEATH_SIGNAL = signal.SIGUSR1
_PR_SET_PDEATHSIG = 1


def _end_group(*_: object) -> None:
    os.killpg(0, signal.SIGKILL)  # the guard is in its group: it ends too


def _ask_for_death_signal(orchestrator: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != orchestrator:  # it died before the request took effect
        _end_group()


def main(argv: list[str]) -> None:
    """Guard ``argv[1:]`` for the orchestrator of pid ``argv[0]``; exits like the command."""
    orchestrator, command = int(argv[0]), argv[1:]
    signal.signal(DEATH_SIGNAL, _end_group)
    if sys.platform.startswith("linux"):
        _ask_for_death_signal(orchestrator)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: None)  # a handler, not SIG_IGN: the command gets the default back
    pid = os.posix_spawnp(command[0], command, os.environ)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # end by the same signal, so the runner sees what the command saw
        if -code != signal.SIGKILL:
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
