"""What `pepx train` shows on a terminal (a pseudo-terminal) and in a pipe: pepx's lines only, no Lightning
chatter, one epoch line per epoch on its own screen line, the bar numbered as those lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pty = pytest.importorskip("pty")  # POSIX only

SRC = str(Path(__file__).resolve().parents[2] / "src")
TINY = ["epochs=2", "image_size=32", "n_train=8", "n_test=4", "n_val=4", "batch_size=8",
        "model_kwargs={width: 0.25}"]
LIGHTNING_SAYS = ("GPU available", "TPU available", "litlogger", "limit_val_batches", "weights_only",
                  "Trainer.fit", "Epoch 0", "Epoch 1", "LeafSpec", "CXRDataset")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "PEPX_CACHE": str(tmp_path / "cache")}


def _train_argv(out: Path) -> list[str]:
    return [sys.executable, "-m", "pepx.cli", "train", "--out", str(out), *TINY]


def _run_in_pty(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `argv` on a 120x40 pseudo-terminal (stdin, stdout, stderr); its exit status and all it showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a sized terminal (tqdm draws nothing at 0 columns), then the command
        import fcntl
        import struct
        import termios

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.execve(argv[0], argv, env)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def screen(text: str) -> list[str]:
    """The lines a terminal ends up showing for `text`: carriage returns overwrite, ESC[A moves up."""
    rows: list[list[str]] = [[]]
    row = col = 0
    for token in re.findall(r"\x1b\[[0-9;]*[A-Za-z]|.", text, flags=re.S):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            rows.extend([] for _ in range(row + 1 - len(rows)))
        elif token.startswith("\x1b["):
            if token.endswith("A"):
                row = max(0, row - int(token[2:-1] or 1))
        else:
            line = rows[row]
            line.extend(" " for _ in range(col + 1 - len(line)))
            line[col] = token
            col += 1
    return ["".join(r).rstrip() for r in rows]


EPOCH_LINE = re.compile(r"epoch (\d+)/2  train_loss \d\.\d{4}  train_acc")


def _check_lines(lines: list[str]) -> None:
    lines = [line for line in lines if line.strip()]
    epochs = [EPOCH_LINE.match(line) for line in lines]
    assert [int(m.group(1)) for m in epochs if m] == [1, 2], lines
    assert sum("train_loss" in line for line in lines) == 2, lines  # none glued onto a bar
    assert sum(line.startswith("data: ") for line in lines) == 1, lines
    assert lines[-1].startswith("run folder: "), lines
    bar = re.compile(r"(epoch \d+/2|Validation[ A-Za-z0-9]*|Training): +(\d+%)?\|")
    other = [line for line in lines if not (EPOCH_LINE.match(line) or bar.match(line)
                                            or line.startswith(("data: ", "run folder: ")))]
    assert not other, other


@pytest.mark.slow
def test_train_on_a_terminal_shows_pepx_lines_only(tmp_path) -> None:
    status, text = _run_in_pty(_train_argv(tmp_path / "run"), _env(tmp_path))
    assert status == 0, text
    assert not [s for s in LIGHTNING_SAYS if s in text], text
    assert "epoch 2/2: 100%|" in text  # the bar counts epochs as pepx does
    _check_lines(screen(text))


@pytest.mark.slow
def test_train_in_a_pipe_shows_pepx_lines_only(tmp_path) -> None:
    done = subprocess.run(_train_argv(tmp_path / "run"), env=_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert not [s for s in LIGHTNING_SAYS if s in done.stdout], done.stdout
    _check_lines(done.stdout.splitlines())
