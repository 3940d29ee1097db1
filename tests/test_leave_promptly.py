"""A stopped daemon exits even when a thread it does not own is stuck (`crmhub.scheduler.leave_promptly`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_stuck_thread_does_not_hold_the_exit_and_is_named() -> None:
    script = textwrap.dedent("""
        import threading
        from crmhub.scheduler import leave_promptly
        blocker = threading.Event()
        threading.Thread(target=blocker.wait, name="stuck-sdk-call").start()  # non-daemon, never set
        leave_promptly(wait=0.2)
        print("not reached")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert "not reached" not in done.stdout
    logged = done.stdout + done.stderr  # structlog's default printer here; the daemon's log goes to stderr
    assert "stuck-sdk-call" in logged and "threads still busy after the stop" in logged


def test_without_busy_threads_it_returns() -> None:
    script = "from crmhub.scheduler import leave_promptly\nleave_promptly(wait=0.2)\nprint('returned')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "returned")
