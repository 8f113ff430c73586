"""Writing the objects: YAML documents, every file or none, and the ``--check`` diff."""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

# yaml (the ``manifests`` extra) is imported where objects are written: the command's
# options and help need none.


@cache
def _dumper() -> type[yaml.SafeDumper]:
    """Block style for multi-line strings (the dashboard JSON stays readable)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    return Dumper


def to_yaml(obj: dict[str, Any]) -> str:
    """One object as a YAML document (label values such as ``"1"`` stay quoted strings)."""
    import yaml

    return yaml.dump(obj, Dumper=_dumper(), sort_keys=False, default_flow_style=False, width=1000)


def to_multi_yaml(objects: Iterable[dict[str, Any]]) -> str:
    return "".join(f"---\n{to_yaml(obj)}" for obj in objects)


class OutputError(Exception):
    """The files could not be written or compared (the message says which and why);
    nothing was changed."""


def write_atomically(directory: Path, files: dict[str, str]) -> None:
    """Write every file or none.

    Each file is staged in a temp file of the directory; existing targets must be
    regular files and are kept (hard-linked) until every rename succeeded, so a failure
    half-way puts the previous ones back and removes every temp file.
    """
    umask = os.umask(0)
    os.umask(umask)
    for name in files:
        target = directory / name
        if target.exists() and not target.is_file():
            raise OutputError(f"cannot write {target}: it exists and is not a regular file")
    staged: list[tuple[Path, Path]] = []
    kept: dict[Path, Path] = {}
    done: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
            staged.append((Path(temp_name), directory / name))
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(temp_name, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        for _, target in staged:
            if target.is_file():
                backup = target.with_name(f".{target.name}.previous")
                backup.unlink(missing_ok=True)
                os.link(target, backup)
                kept[target] = backup
        for staged_file, target in staged:
            os.replace(staged_file, target)
            done.append(target)
    except OSError as exc:
        for target in done:  # put back what was there
            if target in kept:
                os.replace(kept.pop(target), target)
            else:
                target.unlink(missing_ok=True)
        for staged_file, _ in staged:
            staged_file.unlink(missing_ok=True)
        for backup in kept.values():
            backup.unlink(missing_ok=True)
        raise OutputError(
            f"cannot write to {directory}: {exc.strerror or exc}; nothing was changed"
        ) from None
    for backup in kept.values():
        backup.unlink(missing_ok=True)


def check_files(directory: Path, files: dict[str, str]) -> list[str]:
    """Unified diffs of every file that differs from (or is missing in) ``directory``."""
    diffs = []
    for name, expected in files.items():
        path = directory / name
        if path.exists() and not path.is_file():
            raise OutputError(f"cannot compare {path}: it is not a regular file")
        try:
            # bytes that are not UTF-8 differ from what is generated: shown, not a traceback
            actual = path.read_bytes().decode("utf-8", errors="replace") if path.is_file() else ""
        except OSError as exc:
            raise OutputError(f"cannot read {path}: {exc.strerror or exc}") from None
        if actual != expected:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        actual.splitlines(keepends=True),
                        expected.splitlines(keepends=True),
                        fromfile=str(path) if path.is_file() else "/dev/null",
                        tofile=f"{path} (generated)",
                    )
                )
            )
    return diffs
