"""One writer per work directory: an exclusive ``fcntl.flock`` on a lock file that records its holder.

The kernel drops a flock when its process dies, however it dies, so a lock is never left held by a dead process;
the record left behind says who held it last, and the next writer says it takes over. A process may take the same
lock again while it holds it (``make`` trains, searches and exports under one lock)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from factory.core.errors import FactoryError

LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # lock file -> how many times this process holds it


def _record(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _running(record: dict) -> bool:
    if record.get("host") != socket.gethostname():
        return True  # another machine's process: assume it runs
    try:
        os.kill(int(record.get("pid", 0)), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _describe(record: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("since", 0)))
    return f"`{record.get('command', '?')}` (PID {record.get('pid', '?')} on {record.get('host', '?')}, since {since})"


@contextlib.contextmanager
def hold(directory: str | os.PathLike, what: str, wait: bool = False):
    """Hold the lock of ``directory`` for the block; a second writer is refused in one line, or waits."""
    path = (Path(directory) / LOCK_FILE).resolve()
    if _held.get(path):
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _record(path)
            if not wait:
                raise FactoryError(f"{directory} is in use by {_describe(holder)}: wait for it to finish, pass --wait "
                                   "to queue behind it, or use another --workdir") from None
            print(f"waiting for {_describe(holder)} to finish with {directory}", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        last = _record(path)
        if last.get("pid") and not last.get("released") and not _running(last):
            print(f"taking over the lock of {directory} from {_describe(last)}, which is no longer running",
                  flush=True)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": what,
                            "since": time.time()}))
        f.flush()
        _held[path] = 1
        try:
            yield
        finally:
            _held.pop(path, None)
            f.seek(0)
            f.truncate()
            f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": what,
                                "released": time.time()}))
            f.flush()
    finally:
        f.close()  # closing the file releases the flock


def command_line() -> str:
    """What the running process was started as, for the lock's record."""
    name = Path(sys.argv[0]).name if sys.argv else "python"
    return " ".join([("factory" if name in ("factory", "__main__.py") else name), *sys.argv[1:]])
