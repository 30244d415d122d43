"""The CLI: tables, one-line errors with exit code 2."""

import json

import pytest

from archzoo.cli import main


def test_list_json_shows_all_64_papers(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 64
    assert {"slug", "title", "year", "family", "status", "models", "claims"} <= set(rows[0])


@pytest.mark.parametrize("argv", [["info", "resnett"], ["list", "--family", "nope"], ["models", "zzz*"],
                                  ["run", "resnett"], ["train", "nope_model", "--data", "digits"]])
def test_bad_names_print_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("archzoo: error:") and err.count("\n") == 1


def test_unknown_slug_suggests_the_closest_name(capsys):
    assert main(["info", "resnett"]) == 2
    assert "resnet" in capsys.readouterr().err


def test_help_is_available_for_every_command(capsys):
    for command in ("list", "info", "models", "run", "train", "bench", "report", "demo"):
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0
        assert "usage: archzoo " + command in capsys.readouterr().out
