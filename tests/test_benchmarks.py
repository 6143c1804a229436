"""The benchmarks' shared results file and exit status (benchmarks/_common.py), and every
script's option parsing; no benchmark is run."""

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = ("sparse_coding", "recovery", "fit", "streaming", "compare", "explain", "serve_load", "tokens")
sys.path.insert(0, str(BENCHMARKS))
import _common  # noqa: E402


def _args(tmp_path, **extra):
    return argparse.Namespace(results_dir=str(tmp_path / "results"), json=None, threads=2, **extra)


def _targets(*statuses):
    t = _common.Targets()
    for i, ok in enumerate(statuses):
        t(f"target {i}", "value", ok)
    return t


def test_results_file_holds_provenance_and_every_figure(tmp_path, capsys):
    figures = {"rows_per_s": np.float32(8614.5), "shape": np.array([3, 4]), "undefined": math.nan, "ok": (1, 2)}
    status = _common.finish("demo_bench", _args(tmp_path), figures, _targets(True, "info", None))
    assert status == 0
    files = list((tmp_path / "results").iterdir())
    assert len(files) == 1 and files[0].name.startswith("demo_bench-") and files[0].name.endswith("Z.json")
    text = files[0].read_text()
    record = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert record["script"] == "demo_bench"
    assert record["command"].startswith("python ")
    assert len(record["commit"]) == 40 and isinstance(record["dirty"], bool)  # this checkout is a git repository
    assert record["started"].endswith("+00:00") and record["finished"] >= record["started"]
    m = record["machine"]
    assert m["cores"] >= 1 and m["cpu_model"] and m["numpy"] == np.__version__ and m["torch"]
    assert record["figures"] == {"rows_per_s": 8614.5, "shape": [3, 4], "undefined": None, "ok": [1, 2]}
    assert [t["status"] for t in record["targets"]] == ["PASS", "INFO", "SKIP"]
    assert record["verdict"]["exit_status"] == 0 and record["options"]["threads"] == 2
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("PASS: all 1 graded targets passed") and last.endswith("exit status 0")


def test_a_failed_target_exits_1_and_says_so_last(tmp_path, capsys):
    status = _common.finish("demo_bench", _args(tmp_path), {}, _targets(True, False, False))
    assert status == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("FAIL: 2 of 3 graded targets failed") and "target 1; target 2" in last
    assert last.endswith("exit status 1")
    with pytest.raises(SystemExit) as exit_info:
        _common.run(lambda args: _common.finish("demo_bench", args, {}, _targets(False)), _args(tmp_path))
    assert exit_info.value.code == 1


def test_no_graded_target_is_not_a_pass(tmp_path, capsys):
    assert _common.finish("demo_bench", _args(tmp_path), {}, _targets("info", None)) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("no graded target ran")


def test_runs_in_the_same_second_get_their_own_files_and_json_copies(tmp_path):
    copy = tmp_path / "copy.json"
    for _ in range(2):
        _common.finish("demo_bench", _args(tmp_path), {"x": 1}, [])
    _common.finish("demo_bench", argparse.Namespace(results_dir=str(tmp_path / "results"), json=str(copy)), {}, [])
    names = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(names) == 3 and len(set(names)) == 3
    assert json.loads(copy.read_text())["script"] == "demo_bench"
    assert not list(tmp_path.rglob(".*tmp-*"))  # no temporary file left behind


def test_git_state_outside_a_checkout(tmp_path):
    assert _common.git_state(tmp_path) == {"commit": None, "dirty": None}


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_parses_its_options_with_the_results_options(script):
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "--results-dir" in out.stdout and "--json" in out.stdout
