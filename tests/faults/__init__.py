"""Fault injection: real node processes, real SIGKILL/SIGSTOP, real dropped packets, and a checker
that proves nothing acknowledged was lost, duplicated or invented (`python -m tests.faults.run`)."""
