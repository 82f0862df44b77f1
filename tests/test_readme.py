"""The README's command synopsis names every flag each command takes and no flag it does not, so the
first page a new user reads neither hides options (a probe found --device, --shards and evaluate
--seed missing) nor offers ones that are gone."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from flows.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _synopsis() -> dict[str, str]:
    """Command (e.g. 'ingest events', 'train') -> its synopsis line in the README's command block."""
    text = README.read_text()
    block = text.split("## The command line", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines: dict[str, str] = {}
    for line in block.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "reelsense":
            continue
        command = words[1] if words[1] != "ingest" else f"ingest {words[2]}"
        lines[command] = line.split("#", 1)[0]
    return lines


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, f"{prefix}{name} ")
                found.update(nested or {f"{prefix}{name}": sub})
    return found


def test_the_readme_synopsis_names_every_command_and_flag():
    synopsis = _synopsis()
    missing = []
    for command, sub in _commands(build_parser()).items():
        if command not in synopsis:
            missing.append(f"{command} (no line)")
            continue
        flags = set(re.findall(r"--[a-z][a-z-]*", synopsis[command]))
        offered = set()
        for action in sub._actions:
            longs = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
            offered |= set(longs)
            if longs and not flags & set(longs):
                missing.append(f"{command} {longs[0]}")
        missing += [f"{command} {flag} (in the README, not a flag of the command)" for flag in sorted(flags - offered)]
    missing += [f"{command} (in the README, not a command)" for command in set(synopsis) - set(_commands(build_parser()))]
    assert not missing, f"README synopsis and parser differ: {', '.join(missing)}"
