"""One writer per lake: an exclusive ``flock`` on ``_churnsim/lock``.

The kernel releases the lock when its holder exits, however it exits (``kill -9`` included), so
there is no stale lock to take over and no pid to trust: a lock file left behind, or naming a pid
that now belongs to another program, does not hold the lake. The file's text names the holder
(command, pid, host, since when) for the one-line error a second command stops with; it is never
what decides. A second command fails at once, it never waits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from sim.errors import StorageError

__all__ = ["lake_lock"]

_HOLDER_WAIT_S = 0.5  # a new holder writes its name right after taking the lock


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    out = []
    while not path.exists():
        out.append(path)
        path = path.parent
    return out


def _holder(path: Path) -> str:
    """Who holds the lock, as the holder wrote it (read again briefly while it is still empty)."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        try:
            text = path.read_text().strip()
        except OSError:
            text = ""
        if text or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    try:
        h = json.loads(text)
        return f"churnsim {h['command']} (pid {h['pid']} on {h['host']}, since {h['since']})"
    except (ValueError, TypeError, KeyError):
        host, _, pid = text.partition(":")  # the earlier "host:pid" form
        return f"pid {pid} on {host}" if pid else "another churnsim process"


@contextlib.contextmanager
def lake_lock(lake: Path, *, command: str) -> Iterator[None]:
    """Hold ``lake`` for ``command``, or raise :class:`StorageError` naming the lake and its holder.

    Directories made only to hold the lock are removed again when nothing else was written in them,
    so a command refused under the lock leaves no trace.
    """
    internal = lake / "_churnsim"
    made = _missing_dirs(internal)
    path = internal / "lock"
    for _ in range(10):
        internal.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # a releasing holder removed the directory it had made
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StorageError(f"{lake}: {_holder(path)} is writing this lake; wait for it to finish, "
                               "then rerun") from None
        # A holder unlinks the file before it lets go: a lock on a file no longer at ``path`` holds nothing.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise StorageError(f"{lake}: could not take the lock {path} (it kept being replaced)")
    try:
        me = {"command": command, "pid": os.getpid(), "host": socket.gethostname(),
              "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
        for d in made:
            with contextlib.suppress(OSError):  # not empty: something was written, keep it
                d.rmdir()
