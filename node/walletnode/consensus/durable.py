"""Crash-safe file primitives: fsync'd writes, atomic replace, directory fsync."""

from __future__ import annotations

import os


def fsync_dir(directory: str) -> None:
    """Persist a directory's entries (a create, rename or unlink in it survives power loss)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_synced(path: str, data: bytes) -> None:
    """Write `data` to `path` (truncating) and fsync it before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: str, data: bytes) -> None:
    """Write temp, fsync, rename over `path`, fsync the directory: old or new, never a mix."""
    tmp = path + ".tmp"
    write_file_synced(tmp, data)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
