"""Atomic writes: a crash or a bad input never leaves a half-written file or folder."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from factory.core.errors import FactoryError


def user_dir(*parts: str) -> Path:
    """A per-user folder of the factory (``$XDG_CACHE_HOME/mobile-model-factory/...``): what the factory
    writes for a user outside a work directory, never inside the installed package."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base.joinpath("mobile-model-factory", *parts)


def writable_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a folder the factory can write, checked before any work: a file in the way, a
    read-only or unwritable folder (the folder itself or, if it does not exist yet, the nearest
    existing one above it, where it will be created) is a one-line FactoryError naming it."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise FactoryError(f"{what} {path} is a file, not a folder: give a folder path")
    probe_dir = path
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise FactoryError(f"{what} {path} cannot be created: {probe_dir} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".factory-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = "" if probe_dir == path else f" (it would be created in {probe_dir})"
        raise FactoryError(f"{what} {path} cannot be written{where}: {exc.strerror.lower()}; give a folder you "
                           "can write") from None
    return path


def _ordinary(path, mode: int):
    """mkstemp/mkdtemp make private entries; give the result the umask's usual permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _remove_leftovers(path: Path, directory: bool):
    """Temporaries of ``path`` that a killed process left beside it (tempfile's 8 random characters)."""
    suffix = "" if directory else re.escape(path.suffix or ".tmp")
    stem = re.escape(path.name if directory else path.stem)
    pattern = re.compile(rf"\.{stem}\.([a-z0-9_]{{8}}|old){suffix}$")
    for entry in path.parent.iterdir():
        if pattern.match(entry.name):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path, directory=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    _ordinary(tmp, 0o666)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data) -> Path:
    """Write JSON to a temporary file beside ``path``, then rename it into place."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return Path(path)


_KINDS = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
          bool: "true or false", type(None): "null"}


def read_json(path: str | os.PathLike, kind: type | None = dict):
    """The JSON in ``path``; a missing, unreadable or malformed file, or one holding another kind of
    value than ``kind`` (an object by default), is a one-line FactoryError naming the path."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FactoryError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise FactoryError(f"{path} is a folder, not a JSON file: give the file's path") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FactoryError(f"{path} is not readable JSON ({exc}): delete it or restore it") from None
    if kind is not None and not isinstance(data, kind):
        raise FactoryError(f"{path} holds {_KINDS.get(type(data), type(data).__name__)}, not "
                           f"{_KINDS.get(kind, kind.__name__)}: give the file the factory wrote, or restore it")
    return data


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield a temporary folder that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path, directory=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    _ordinary(tmp, 0o777)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
