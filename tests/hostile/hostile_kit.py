"""Shared pieces of the hostile-input probe (tests/hostile/test_hostile_*.py, issue 17).

Every case runs one `pepx` command (in-process, in a thread with a time limit, so a hang fails the case
instead of the suite) on a workspace of real files, and checks these in order; a failure names its kind in
brackets, which is how the probe is tallied (`pytest tests/hostile --junitxml=r.xml`, then
`python tests/hostile/hostile_kit.py r.xml`):

    [hang]       the command did not finish within its time limit
    [traceback]  an exception escaped, or stderr holds a traceback
    [data loss]  a file of the workspace outside the command's own output vanished or changed
    [security]   a case about a security property (a symlink leaving a bundle, a token) did not hold
    [wrong]      the exit status, the message or the output is not the one expected, or the command wrote
                 new files outside its own output (it ran where it should have refused)

The workspace is fingerprinted with `os.walk` without following links (`lstat`: a symlink is recorded by its
target, a FIFO or device by its type, never opened), so FIFOs, loops and links to devices are safe in it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from pepx.cli import main

KINDS = ("hang", "traceback", "data loss", "security", "wrong")


def fingerprints(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (links not followed): regular files by size and sha256, links by target,
    folders and special files by type."""
    out: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    out[rel] = ("file", st.st_size, hashlib.sha256(fh.read()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode))
    return out


def changed_files(before: dict[str, tuple], after: dict[str, tuple], allowed: Sequence[str]) -> list[str]:
    """Entries outside the `allowed` patterns (fnmatch on the relative path; a pattern also allows everything
    below it: the command's own output, which it may create or rewrite) that vanished, changed or appeared."""
    def own(rel: str) -> bool:
        return any(fnmatch(rel, pat) or rel.startswith(pat.rstrip("/") + os.sep) for pat in allowed)

    bad = [f"{rel}: vanished" for rel in before if rel not in after and not own(rel)]
    bad += [f"{rel}: changed" for rel in before
            if rel in after and after[rel] != before[rel] and not own(rel)]
    bad += [f"{rel}: new" for rel in after if rel not in before and not own(rel)]
    return bad


@dataclass
class Case:
    """One hostile case: `argv` (with `{ws}` for the workspace), the exit status and a fragment of the one
    stderr line expected (of stdout + stderr when the status is 0), the paths that are its own output (it may
    create or rewrite them; nothing else may change), and an optional check of the result
    `(ws, status, stdout, stderr) -> None` raising AssertionError."""

    id: str
    argv: list[str]
    status: int = 2
    message: str | None = None
    outputs: list[str] = field(default_factory=list)
    security: bool = False
    check: Callable[[Path, int, str, str], None] | None = None
    timeout: float = 120.0
    stderr_lines: int | None = None  # None: exactly one line when status != 0, none when 0


def run_cli(argv: list[str], timeout: float) -> tuple[int | None, BaseException | None]:
    """`pepx.cli.main(argv)` in a daemon thread: (exit status or None when it hung, escaped exception)."""
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["status"] = main(argv)
        except SystemExit as exit_:  # argparse
            result["status"] = exit_.code
        except BaseException as err:  # noqa: BLE001 - reported as a traceback
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return None, None
    return result.get("status"), result.get("error")  # type: ignore[return-value]


def fail(kind: str, text: str) -> None:
    raise AssertionError(f"[{kind}] {text}")


def release_fifo(path: Path) -> None:
    """Unblock a process stuck opening the FIFO `path`: a reader (opened for writing, then closed, it sees
    EOF) or a writer (opened for reading, then closed, its writes fail)."""
    for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
        try:
            os.close(os.open(path, flags))
        except OSError:  # nobody waiting on that side
            pass


def _unblock(argv: list[str]) -> None:
    """After a hang: release every FIFO the command was given, so that its thread can end."""
    for arg in argv:
        path = Path(arg.split(":", 1)[-1])
        if path.is_fifo():
            release_fifo(path)


def _drop_stale_log_handlers() -> None:
    """A command still hanging in its thread keeps its stdout handler on the `pepx` logger, writing to an
    earlier test's closed capture: drop such handlers, so that they do not print logging tracebacks here."""
    logger = logging.getLogger("pepx")
    for handler in list(logger.handlers):
        if getattr(getattr(handler, "stream", None), "closed", False):
            logger.removeHandler(handler)


def run_case(case: Case, ws: Path, capsys) -> tuple[int, str, str]:
    """Run `case` on the workspace `ws` and check it (see the module docstring for the order)."""
    argv = [a.format(ws=ws, id=case.id) for a in case.argv]
    _drop_stale_log_handlers()
    before = fingerprints(ws)
    status, error = run_cli(argv, case.timeout)
    if status is None and error is None:
        _unblock(argv)
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    if status is None and error is None:
        fail("hang", f"still running after {case.timeout:.0f} s: pepx {' '.join(argv)}")
    if error is not None:
        fail("security" if case.security else "traceback", f"{type(error).__name__}: {error}")
    lines = err.splitlines()
    if "Traceback" in err:
        fail("traceback", err[-2000:])
    bad = changed_files(before, fingerprints(ws), [o.format(ws=ws, id=case.id) for o in case.outputs])
    kind = "security" if case.security else "wrong"
    if any(not b.endswith(": new") for b in bad):
        fail("data loss", "; ".join(b for b in bad if not b.endswith(": new"))[:600])
    if bad:  # only new files: it wrote where it should have refused
        fail(kind, "wrote files it should not have: " + "; ".join(bad[:8]))
    if status != case.status:
        fail(kind, f"exit status {status}, expected {case.status}; stderr: {err[-1500:]}")
    wanted = case.stderr_lines if case.stderr_lines is not None else (1 if case.status else 0)
    if case.stderr_lines is not None or case.status:
        if len(lines) != wanted:
            fail(kind, f"{len(lines)} stderr lines, expected {wanted}: {err[-1500:]}")
    if case.message is not None:
        text = err if case.status else out + err
        if case.message.format(ws=ws) not in text:
            fail(kind, f"expected {case.message.format(ws=ws)!r} in: {text[-1500:]}")
        if case.status and not lines[-1].startswith("pepx"):
            fail(kind, f"not pepx's one-line error: {lines[-1]}")
    if case.check is not None:
        try:
            case.check(ws, status, out, err)
        except AssertionError as failure:
            if re.match(r"\[(hang|traceback|data loss|security|wrong)\]", str(failure)):
                raise
            fail(kind, str(failure))
    return status, out, err


def tally(junit_xml: str) -> tuple[dict[str, int], list[str]]:
    """Cases run, passed and failed by kind, and one line per failure, from a pytest `--junitxml` report (a
    failure without a kind is an exception the probe did not catch: a traceback)."""
    import xml.etree.ElementTree as ET

    counts, lines = {"cases": 0, "passed": 0, **dict.fromkeys(KINDS, 0)}, []
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        counts["cases"] += 1
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is None:
            counts["passed"] += 1
            continue
        message = problem.get("message", "")
        match = re.search(r"\[(hang|traceback|data loss|security|wrong)\]", message)
        kind = match.group(1) if match else "traceback"
        counts[kind] += 1
        lines.append(f"{kind:10} {case.get('name')}: {message[match.end() if match else 0:][:150].strip()}")
    return counts, lines


if __name__ == "__main__":
    totals, failures = tally(sys.argv[1])
    print("\n".join(failures))
    print(totals)
