"""pepx.fileio (issue 17): the one atomic writer every report, CSV, checkpoint and cache entry goes through,
and the path checks that never open a FIFO or follow a link loop."""

from __future__ import annotations

import errno
import os

import pandas as pd
import pytest

from pepx.errors import OutputError
from pepx.evaluation.report import write_json
from pepx.fileio import atomic_path, file_problem, walk_files, write_csv, write_text


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_a_full_disk_mid_write_keeps_the_old_file_whole(tmp_path):
    old = tmp_path / "report.md"
    old.write_text("the old report\n")
    with pytest.raises(OutputError, match="report.md: cannot write it .*No space left.*kept whole"):
        with atomic_path(old) as tmp:
            tmp.write_text("half of the new")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert old.read_text() == "the old report\n" and _leftovers(tmp_path) == []


def test_a_bug_mid_write_passes_through_and_keeps_the_old_file(tmp_path):
    old = tmp_path / "metrics.json"
    write_json({"accuracy": 0.5}, old)
    with pytest.raises(TypeError):  # not a write failure: no OutputError, the traceback stays a bug's
        write_json({"accuracy": object()}, old)
    assert old.read_text() == '{\n  "accuracy": 0.5\n}\n' and _leftovers(tmp_path) == []


def test_a_symlink_at_the_target_is_replaced_not_written_through(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours\n")
    link = tmp_path / "out.csv"
    link.symlink_to(secret)
    write_csv(pd.DataFrame({"a": [1, 2]}), link, index=False)
    assert secret.read_text() == "not yours\n"
    assert not link.is_symlink() and link.read_text() == "a\n1\n2\n"


def test_path_problems_are_named_without_opening_anything(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it would block
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    broken = tmp_path / "gone.png"
    broken.symlink_to(tmp_path / "nowhere.png")
    up = tmp_path / "sub"
    up.mkdir()
    (up / "parent").symlink_to(tmp_path)  # a walk that followed it would never end
    write_text(tmp_path / "ok.png", "x")
    assert file_problem(fifo) == "not a regular file (a FIFO (named pipe))"
    assert file_problem(loop) == "symbolic link loop"
    assert file_problem(broken) == "broken symbolic link (target missing)"
    assert file_problem(up / "parent") == "symbolic link to a folder (not followed inside a folder)"
    assert file_problem(tmp_path / "ok.png") is None
    names = [p.relative_to(tmp_path).as_posix() for p in walk_files(tmp_path)]
    assert names == ["gone.png", "loop.png", "ok.png", "pipe.png", "sub/parent"]
