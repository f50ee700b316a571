"""Decoded images on disk, read a batch at a time: training memory that does not grow with the data set.

A folder of 50,000 photos at 224x224 is 7.5 GB as uint8. It is decoded once, in parallel, into one ``.npy``
file per split (written in chunks to a temporary file, then renamed: an interrupted decode leaves nothing),
and :class:`ImageCache` serves any batch of it by opening the file for that read only, so neither the decoded
set nor its page cache stays in the process's resident memory.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from factory.core.files import atomic_file
from factory.training.portable.images import decode_files, resize_images

CHUNK = 256  # images decoded per task and written per write: the memory decoding holds per worker
PARALLEL_FROM = 2 * CHUNK  # smaller sets decode in this process: starting workers costs more than it saves


class ImageCache:
    """uint8 images ``(N, S, S, 3)`` in a ``.npy`` file, indexed like an array (an int, a slice, an index
    array); each read opens the file for itself, so only the images read are in memory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        header = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype = header.shape, header.dtype
        del header

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        images = np.load(self.path, mmap_mode="r")
        try:
            return np.array(images[index])
        finally:
            del images

    def __repr__(self) -> str:
        return f"ImageCache({str(self.path)!r}, shape={self.shape})"

    def chunks(self, size: int = CHUNK):
        for start in range(0, len(self), size):
            yield self[start:start + size]

    def resized(self, size: int) -> "ImageCache":
        """The same images at ``size`` x ``size`` (``resize_images``), cached beside this file once."""
        if self.shape[1:3] == (size, size):
            return self
        path = self.path.with_name(f"{self.path.stem}@{size}.npy")
        if not path.exists():
            write_npy(path, (len(self), size, size, 3), (resize_images(chunk, size) for chunk in self.chunks()))
        return ImageCache(path)


def write_npy(path: Path, shape: tuple, chunks) -> Path:
    """A uint8 ``.npy`` of ``shape`` written chunk by chunk (temporary file, then rename)."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
        written = 0
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())
            written += len(chunk)
        if written != shape[0]:
            raise ValueError(f"{path}: {written} images written, {shape[0]} announced")
    return path


def decode_to_cache(paths: list[Path], size: int, policy: str, path: Path, label: str = "",
                    workers: int | None = None) -> ImageCache:
    """Image files decoded (``decode_files``) into the cache file ``path``, on every core for large sets, with a
    progress line; a cache already there is reused."""
    path = Path(path)
    if path.exists():
        return ImageCache(path)
    groups = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = workers or os.cpu_count() or 1
    start, done = time.time(), 0

    def progress(chunks):
        nonlocal done
        for chunk in chunks:
            done += len(chunk)
            if sys.stdout.isatty() or done == len(paths) or done % (20 * CHUNK) < CHUNK:
                rate = done / max(time.time() - start, 1e-9)
                print(f"\rdecoding {label}: {done}/{len(paths)} images ({rate:.0f}/s)", end="", flush=True)
            yield chunk
        if paths:
            print(flush=True)

    if len(paths) < PARALLEL_FROM or workers == 1:
        write_npy(path, (len(paths), size, size, 3), progress(decode_files(g, size, policy) for g in groups))
    else:  # spawned workers import numpy and PIL only, never TensorFlow
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            write_npy(path, (len(paths), size, size, 3),
                      progress(_in_order(pool, groups, 2 * workers, size, policy)))
    return ImageCache(path)


def _in_order(pool, groups, window: int, *args):
    """``decode_files`` of each group on the pool, in order, with at most ``window`` decoded chunks waiting:
    memory stays a few chunks whatever the number of images."""
    pending = collections.deque()
    for group in groups:
        pending.append(pool.submit(decode_files, group, *args))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
