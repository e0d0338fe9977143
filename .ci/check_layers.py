#!/usr/bin/env python3
"""Keeps the engine folder acyclic (src/rt/mod.rs, "Invariant (layering)").

1. No file under src/rt/ names anything of the crate outside src/rt/: a path
   `crate::X` with X other than `rt` (the public layers and the crate-root
   re-exports of theirs), or a `super::` chain that climbs out of src/rt/.
2. The layers that only wait on the engine (sync, io, net, os, signal, time,
   future, hooks) use its narrow surface (the re-exports of src/rt/mod.rs and its
   leaf modules), never the engine's core modules.

Comments and `#[cfg(test)]` modules are not checked: docs may link to the public
API, and unit tests may build a runtime through it. Exits 1 and lists the lines
that break a rule.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "src"
ENGINE = ROOT / "rt"
WAITING = ["sync", "io", "net", "os", "signal.rs", "time", "future.rs", "hooks"]
CORE = r"crate::rt::(scheduler|reactor|context|stack|blocking|locals|timer_queue)\b"

STRING = re.compile(r'b?"(\\.|[^"\\])*"')
CHAR = re.compile(r"'(\\.|[^'\\])'")
CRATE_PATH = re.compile(r"(?<![\w$])crate::(\w+)")
SUPERS = re.compile(r"(?<![\w:])((?:super::)+)")
TEST_ATTR = re.compile(r"#\[cfg\((.*\b)?test\b")


def code_lines(path):
    """(line number, code) for each line outside comments and test modules."""
    in_block_comment = False
    skip_depth = None  # brace depth at which a skipped test module started
    pending_test = False
    depth = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = CHAR.sub("''", STRING.sub('""', raw))
        if in_block_comment:
            if "*/" not in line:
                continue
            line = line.split("*/", 1)[1]
            in_block_comment = False
        line = re.sub(r"/\*.*?\*/", "", line)
        if "/*" in line:
            line, in_block_comment = line.split("/*", 1)[0], True
        line = line.split("//", 1)[0]
        stripped = line.strip()
        if skip_depth is None and TEST_ATTR.match(stripped) and "not(test" not in stripped:
            pending_test = True
        elif pending_test and stripped.startswith("#["):
            pass  # more attributes on the same item
        elif pending_test and stripped:
            if re.match(r"(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", stripped):
                skip_depth = depth
            pending_test = False
        skipping = skip_depth is not None
        depth += line.count("{") - line.count("}")
        if skip_depth is not None and depth <= skip_depth and "}" in line:
            skip_depth = None
        if not skipping and not pending_test:
            yield number, line


def module_depth(path):
    """How many `super::` lead from this file's module to the crate root."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "mod":
        parts = parts[:-1]
    return len(parts)


def main():
    bad = []
    for path in sorted(ENGINE.rglob("*.rs")):
        depth = module_depth(path)
        for number, line in code_lines(path):
            for m in CRATE_PATH.finditer(line):
                if m.group(1) != "rt":
                    bad.append((path, number, f"names crate::{m.group(1)}"))
            for m in SUPERS.finditer(line):
                # From a module at depth d, d - 1 `super::` reach `rt` itself.
                if m.group(1).count("super::") >= depth:
                    bad.append((path, number, "climbs out of src/rt/ with super::"))
    for name in WAITING:
        target = ROOT / name
        files = sorted(target.rglob("*.rs")) if target.is_dir() else [target]
        for path in files:
            for number, line in code_lines(path):
                m = re.search(CORE, line)
                if m:
                    bad.append((path, number, f"names the engine's core ({m.group(0)}): use crate::rt's surface"))
    for path, number, why in bad:
        print(f"{path.relative_to(ROOT.parent)}:{number}: {why}", file=sys.stderr)
    if bad:
        print(f"layering: {len(bad)} violation(s) (see src/rt/mod.rs)", file=sys.stderr)
        return 1
    print("layering: src/rt/ names no public layer; the waiting layers use its surface")
    return 0


if __name__ == "__main__":
    sys.exit(main())
