"""Bad configs and tables through the command line, as a scheduled job meets them: `driftline run --fit`
exits with code 2 and one line naming the config key (or the monitor and window) and what to do, no
traceback, and writes nothing (the output directory is never created). The checks themselves are
unit-tested in tests/test_config.py; this is what the user sees."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml

from monitoring.cli import main

from ..helpers import write_delta


@pytest.fixture(scope="module")
def table(spark, tmp_path_factory):
    rng = np.random.default_rng(3)
    n = 600
    micros = ((1735689600 + np.arange(n) * 400 + rng.random(n)) * 1e6).astype("int64")
    frame = pd.DataFrame({"id": np.arange(n), "ts": pd.to_datetime(micros, unit="us", utc=True),
                          "x": rng.normal(0, 1, n), "cat": rng.choice(["a", "b"], n), "score": rng.random(n)})
    return write_delta(spark, frame, str(tmp_path_factory.mktemp("bad_config") / "preds"))


def _config(table: str, out: str) -> dict:
    return {"monitor": "bad", "problem_type": "binary",
            "source": {"table": table, "id_column": "id", "timestamp_column": "ts"},
            "features": [{"name": "x", "kind": "continuous"}, {"name": "cat", "kind": "categorical"}],
            "outputs": {"score": "score"}, "chunking": {"period": "1d"},
            "reference": {"start": "2025-01-01", "end": "2025-01-02"}, "output": {"path": out},
            "mlflow": {"enabled": False}}


def _renamed(c):
    c["features"][0]["name"] = "xx"


def _retyped(c):
    c["features"][1]["kind"] = "continuous"


def _ts_type(c):
    c["source"]["timestamp_column"] = "id"


def _no_table(c):
    c["source"]["table"] = c["source"]["table"] + "_missing"


def _empty_reference(c):
    c["reference"] = {"start": "2024-01-01", "end": "2024-02-01"}


def _out_of_range(c):
    c["profile"] = {"top_n": 0}


def _typo(c):
    c["chunkng"] = c.pop("chunking")


CASES = {
    "renamed column": (_renamed, r"features\[0\]\.name.*'xx'.*Did you mean 'x'"),
    "string column as continuous": (_retyped, r"features\[1\]\.kind.*'cat'.*string.*categorical"),
    "timestamp column of another type": (_ts_type, r"source\.timestamp_column.*'id'.*bigint"),
    "missing table": (_no_table, r"source\.table"),
    "empty reference": (_empty_reference, r"reference of monitor 'bad' holds no rows.*reference\.start/end"),
    "out-of-range value": (_out_of_range, r"profile\.top_n"),
    "unknown key": (_typo, r"chunkng.*chunking"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_is_one_clear_line_and_writes_nothing(table, tmp_path, capsys, case):
    change, message = CASES[case]
    out = tmp_path / "out"
    config = _config(table, str(out))
    change(config)
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", "--fit", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("driftline: error:")]
    assert re.search(message, line), line
    assert "Traceback" not in err
    assert not out.exists()


def test_malformed_yaml_names_the_line(tmp_path, capsys):
    path = tmp_path / "monitor.yaml"
    path.write_text("monitor: x\nfeatures: [a, b\n")
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML at line" in err and "Traceback" not in err
