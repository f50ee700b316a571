"""A quiet console for the CLI: native logging to a log file, the factory's own lines to the terminal.

TensorFlow, absl, XNNPACK and the TFLite converter write from C++ straight to file
descriptor 2 (start-up lines, CUDA probing, ``fully_quantize: 0, ...`` per conversion), so
no Python setting silences all of them. :class:`Console` points descriptor 2 at a log
file and gives Python's ``sys.stderr`` a copy of the real terminal, so the factory's own
errors and warnings still reach the user on one line each. Python's logging and
warnings go to the log too. With ``verbose`` nothing is redirected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path

from factory.core.files import user_dir
from factory.training.workdir import Workdir


class Console:
    """Context manager for one CLI command; ``log`` is where native output goes while it runs."""

    def __init__(self, verbose: bool = False):
        self.verbose = verbose
        self.log: Path | None = None
        self._saved = self._stderr = self._handlers = None

    def __enter__(self) -> "Console":
        if self.verbose:
            return self
        fd = None
        for folder in (user_dir("logs"), Path("/tmp")):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self.log = folder / f"factory-{os.getpid()}.log"
                fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                break
            except OSError:
                self.log = None
        if fd is None:
            return self
        sys.stderr.flush()
        self._saved = os.dup(2)
        os.dup2(fd, 2)
        os.close(fd)
        if sys.stderr is sys.__stderr__:  # the terminal's stream now writes to the log: give Python a copy
            self._stderr = sys.stderr
            sys.stderr = os.fdopen(os.dup(self._saved), "w", buffering=1, encoding="utf-8", errors="replace")
        root = logging.getLogger()
        self._handlers = (root.handlers[:], root.level)
        root.handlers, root.level = [logging.FileHandler(self.log)], logging.WARNING
        logging.captureWarnings(True)
        return self

    def finish(self, workdir: str | Path | None, trace: BaseException | None = None) -> Path | None:
        """End the run's log: its traceback added when ``trace`` is given (a bug), appended to
        ``workdir/factory.log`` when that folder exists, else kept only for a bug. Returns where it is."""
        if self.log is None:
            return None
        if trace is not None:
            with open(self.log, "a") as f:
                f.write("".join(traceback.format_exception(type(trace), trace, trace.__traceback__)))
        kept = None
        if workdir is not None and Path(workdir).is_dir():
            target = Workdir(workdir).log_file
            with contextlib.suppress(OSError), open(self.log, "rb") as src, open(target, "ab") as dst:
                dst.write(src.read())
                kept = target
        if kept is None and trace is not None:
            return self.log
        with contextlib.suppress(OSError):
            self.log.unlink()
        return kept

    def __exit__(self, *exc):
        if self._saved is None:
            return False
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        if self._stderr is not None:
            sys.stderr.close()
            sys.stderr = self._stderr
        root = logging.getLogger()
        for handler in root.handlers:
            handler.close()
        root.handlers, root.level = self._handlers
        logging.captureWarnings(False)
        self._saved = self._stderr = None
        return False
