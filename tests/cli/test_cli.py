"""The `pepx` entry point: bad input is one clear line on stderr and exit code 2, not a traceback."""

from __future__ import annotations

import pytest

from pepx.cli import main


@pytest.mark.parametrize("argv, expected", [
    (["data", "inspect", "csv:/nonexistent/metadata.csv"], "/nonexistent/metadata.csv does not exist"),
    (["data", "inspect", "bogus:/x"], "use FORMAT:PATH"),
    (["evaluate", "/nonexistent/run"], "/nonexistent/run/config.yaml"),
])
def test_bad_input_is_one_line_and_exit_2(argv, expected, capsys, monkeypatch) -> None:
    monkeypatch.delenv("PEPX_DEBUG", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and err.count("\n") == 1


def test_debug_env_shows_the_exception(monkeypatch) -> None:
    monkeypatch.setenv("PEPX_DEBUG", "1")
    with pytest.raises(Exception, match="does not exist"):
        main(["data", "inspect", "csv:/nonexistent/metadata.csv"])


def test_models_table_lists_every_model(capsys) -> None:
    assert main(["models", "--size", "64"]) == 0
    out = capsys.readouterr().out
    for name in ("pepx_resnet", "resnet18", "covidnet"):
        assert name in out
