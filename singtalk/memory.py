"""Keep a many-threaded server's memory near what it uses: cap glibc's malloc arenas.

glibc gives each new thread that contends for memory an arena of its own (up to 8 per core), and NumPy's
large temporaries freed in one arena are not reused by another. Streamlit runs each session's script in its
own thread, so ten visitors at once left the server at 775 MB where 360 MB sufficed with two arenas
(``scripts/bench_visitors.py --n 10``, docs/performance.md). :func:`limit_malloc_arenas` is ``mallopt``
with ``M_ARENA_MAX``, the same as ``MALLOC_ARENA_MAX`` in the environment, but set from inside the process,
so any way of starting the app gets it. Threads already running keep their arena.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # from glibc's malloc.h
ARENAS_ENV = "MALLOC_ARENA_MAX"


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap the process's malloc arenas at ``arenas`` unless ``$MALLOC_ARENA_MAX`` says otherwise.

    True when set; False where there is no glibc (musl, macOS) or the environment already decided.
    """
    if os.environ.get(ARENAS_ENV):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_ARENA_MAX, int(arenas)))
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False
