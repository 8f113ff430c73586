"""Print the shell command of the README's Quick start block number N (1: demo, 2: tests).

CI runs exactly what the README tells users to run, so the two cannot drift.
"""

import re
import sys
from pathlib import Path

readme = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)
if len(blocks) != 2 or any("\n" in b for b in blocks):
    sys.exit("README's Quick start must hold exactly two one-line ```sh blocks")
print(blocks[int(sys.argv[1]) - 1])
