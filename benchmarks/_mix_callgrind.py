"""Counting a process' instructions with ``valgrind --tool=callgrind`` for ``bench_mix.py``,
from its measured requests on.

Python's start-up, the imports and the app's construction (10,000 routes take seconds)
cancel out of ``bench_mix``'s figure anyway (two runs, few and many requests), but under
full instrumentation they take most of a run's time.  So, where a C compiler and valgrind's
headers are at hand, the process starts with instrumentation off and switches it on
itself (``CALLGRIND_START_INSTRUMENTATION``, through a tiny library loaded with ctypes)
just before its measured requests; elsewhere the whole process is counted, which gives the
same figure, more slowly.  Background threads are counted from then on, like the rest.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

SWITCH = "BENCH_MIX_CALLGRIND_SWITCH"
_SOURCE = """#include <valgrind/callgrind.h>
void bench_mix_start(void) { CALLGRIND_START_INSTRUMENTATION; }
"""


@dataclass(frozen=True)
class Callgrind:
    """How the measured processes run: the switch library, if one could be built."""

    switch: Path | None

    @classmethod
    def prepared(cls, directory: Path) -> Callgrind:
        """Build the switch into ``directory`` (without it: the whole process counted)."""
        source, library = directory / "switch.c", directory / "switch.so"
        source.write_text(_SOURCE)
        try:
            done = subprocess.run(
                ["cc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source)],
                capture_output=True,
                check=False,
            )
        except OSError:
            return cls(None)
        return cls(library if done.returncode == 0 else None)

    def command(self, argv: list[str], out: Path) -> list[str]:
        options = ["--tool=callgrind", f"--callgrind-out-file={out}"]
        if self.switch is not None:
            options.append("--instr-atstart=no")
        return ["valgrind", *options, *argv]

    def environment(self) -> dict[str, str]:
        return {SWITCH: str(self.switch)} if self.switch is not None else {}


def start_counting() -> None:
    """In a measured process: count instructions from here on (nothing outside valgrind)."""
    library = os.environ.get(SWITCH)
    if library:
        ctypes.CDLL(library).bench_mix_start()


def totals(out: Path) -> int:
    """The instructions a callgrind output file counts."""
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), flags=re.M)
    assert match, "no totals in callgrind output"
    return int(match.group(1))
