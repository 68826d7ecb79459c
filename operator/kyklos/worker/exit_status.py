"""Exit statuses of ``kyklos worker profile|drift``, one set for both commands.

The reason in the termination message says what went wrong; the status only sorts it:
0 the command did its work (a profile, a drift check, drifted or not); 1 the data broke a
rule or cannot be compared; 2 a source or artifact could not be read, or the spec is
invalid; 3 an unexpected error inside the worker.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INVALID_DATA = 1
EXIT_UNREADABLE = 2
EXIT_INTERNAL = 3
