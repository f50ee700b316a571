"""The errors a user can cause, and the one line the CLI prints for each."""

from __future__ import annotations

import errno
import sys


class FactoryError(Exception):
    """A problem with the user's input or work directory; the message names the fix."""


_OS_FIXES = {
    errno.EROFS: "the file system is read-only: give a path on a writable disk",
    errno.ENOSPC: "no space left on the device: free some space (or give a path on another disk), then rerun "
                  "the same command, which resumes",
    errno.EDQUOT: "the disk quota is used up: free some space, then rerun the same command, which resumes",
    errno.EACCES: "permission denied: give a path you can write, or fix its permissions",
    errno.EPERM: "operation not permitted: give a path you can write, or fix its permissions",
    errno.EISDIR: "a folder is where a file is expected: give a file's path",
    errno.ENOTDIR: "a file is where a folder is expected: give another path",
    errno.ENOENT: "no such file or folder: check the path",
}
# TensorFlow's file system reports OS faults inside its own errors' messages
_TF_TEXTS = {"No space left on device": errno.ENOSPC, "Read-only file system": errno.EROFS,
             "Permission denied": errno.EACCES, "Disk quota exceeded": errno.EDQUOT}
_OOM = "out of memory: use a smaller --batch-size (or a smaller space, or fewer images)"


def fault_line(exc: BaseException) -> str | None:
    """The one line for a fault the user can fix (bad input, file system, memory); None for a bug."""
    if isinstance(exc, FactoryError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _OS_FIXES:
        where = exc.filename if exc.filename is not None else "a file the factory was writing"
        return f"{where}: {_OS_FIXES[exc.errno]}"
    if isinstance(exc, MemoryError):
        return _OOM
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(exc, tf.errors.OpError):
        for text, code in _TF_TEXTS.items():
            if text in exc.message:
                return f"TensorFlow could not write a file ({text.lower()}): {_OS_FIXES[code].split(': ', 1)[1]}"
        if isinstance(exc, tf.errors.ResourceExhaustedError):
            return _OOM
    return None
