"""Drop-in files on disk: which files a plugin directory holds, the trust checks on the
directory and on each file, and executing exactly the checked bytes as a module.

A file is trusted only when nobody but the daemon's user or root could have written it: one
that is group- or world-writable or owned by another uid is refused, as is a world-writable
directory. Every refusal is a :class:`ConfigError`; :mod:`heliosd.plugins.loading` registers
what they yield.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path
from types import ModuleType

from heliosd.core.errors import ConfigError


def _check_dir(directory: Path, source: str) -> None:
    try:
        st = directory.stat()
    except OSError as exc:
        raise ConfigError(
            f"plugin directory {directory} is not usable: {exc.strerror}",
            key="daemon.plugin_dirs",
            source=source,
        ) from None
    why = None
    if not stat.S_ISDIR(st.st_mode):
        why = "is not a directory"
    elif st.st_mode & stat.S_IWOTH:
        why = "is world-writable (anyone could add a plugin)"
    elif st.st_uid not in (os.geteuid(), 0):
        why = f"is owned by uid {st.st_uid}, not by the daemon's user or root"
    if why:
        raise ConfigError(
            f"plugin directory {directory} {why}", key="daemon.plugin_dirs", source=source
        )


def _read_trusted(path: Path) -> bytes:
    """The file's bytes, if only the daemon's user or root could have written them.

    The checks use fstat on the opened descriptor, so the checked file is the one read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"plugin file {path} cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        why = None
        if not stat.S_ISREG(st.st_mode):
            why = "is not a regular file"
        elif st.st_mode & stat.S_IWOTH:
            why = "is world-writable"
        elif st.st_mode & stat.S_IWGRP:
            why = "is group-writable"
        elif st.st_uid not in (os.geteuid(), 0):
            why = f"is owned by uid {st.st_uid}, not by the daemon's user or root"
        if why:
            raise ConfigError(f"refusing plugin file {path}: it {why} (chmod go-w / chown)")
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _dropin_files(directory: Path) -> list[Path]:
    # Dot-files are editor swap/backup files, never plugins.
    return sorted(
        (p for p in directory.iterdir() if p.suffix == ".py" and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _exec_module(modname: str, path: Path, code: bytes) -> ModuleType:
    """Import ``code`` (the checked bytes) as module ``modname``."""
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None:
        raise ConfigError(f"plugin file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    # In sys.modules while it runs: dataclasses and typing look their module up there.
    sys.modules[modname] = module
    try:
        exec(compile(code, str(path), "exec"), module.__dict__)  # noqa: S102 - checked above
    except BaseException as exc:
        sys.modules.pop(modname, None)
        if not isinstance(exc, Exception):
            raise
        raise ConfigError(
            f"plugin file {path} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return module
