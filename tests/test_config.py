"""Config loading and validation: every bad config fails fast with the key named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from monitoring.config import Period, load_config, parse_config, validate_against_schema
from monitoring.errors import ConfigError
from monitoring.pipeline import open_source

from .helpers import make_config, write_delta

ROOT = Path(__file__).resolve().parents[1]


def _demo_dict() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "conf" / "demo.yaml").read_text())


def test_demo_config_loads():
    config = load_config(ROOT / "conf" / "demo.yaml")
    assert config.monitor == "car_loans"
    assert config.chunking.period == Period(1, "w")
    assert ("y_score", "continuous") in config.monitored_columns()
    assert ("y_pred", "categorical") in config.monitored_columns()
    assert config.reference.start.isoformat() == "2024-12-30T00:00:00+00:00"
    assert config.drift.std_multiplier == 5 and config.slices.expressions == ("region",)


@pytest.mark.parametrize(("drift", "message"), [
    ({"continuous_methods": ["kolmogorov_smirnof"]}, r"drift\.continuous_methods\[0\].*Did you mean"),
    ({"categorical_methods": ["wasserstein"]}, r"drift\.categorical_methods\[0\].*unknown method"),
    ({"thresholds": [{"metric": "ks"}]}, r"drift\.thresholds\[0\]\.metric.*unknown metric"),
    ({"thresholds": [{"metric": "psi", "type": "pvalue"}]}, r"drift\.thresholds\[0\]\.type.*p-value metrics"),
    ({"thresholds": [{"metric": "psi", "type": "constant"}]}, r"drift\.thresholds\[0\].*lower and/or upper"),
    ({"thresholds": [{"metric": "psi", "columns": ["nope"]}]}, r"drift\.thresholds\[0\]\.columns.*'nope'"),
    ({"thresholds": [{"metric": "chi2_pvalue", "type": "pvalue", "alpha": 5}]}, r"alpha.*significance"),
    ({"bins": 1}, r"drift\.bins.*at least 2"),
    ({"std_multiplier": 0}, r"drift\.std_multiplier"),
])
def test_bad_drift_settings_name_the_key(drift, message):
    data = _demo_dict()
    data["drift"] = drift
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


@pytest.mark.parametrize("period", ["1 month", "0d", "mo", "1m", "-1d", "1.5d"])
def test_bad_period_names_the_key(period):
    data = _demo_dict()
    data["chunking"] = {"period": period}
    with pytest.raises(ConfigError, match=r"chunking\.period.*not a period.*'1mo'"):
        parse_config(data)


def test_wrong_kind_lists_choices():
    data = _demo_dict()
    data["features"][2]["kind"] = "numeric"
    with pytest.raises(ConfigError, match=r"features\[2\]\.kind.*'numeric' is not valid.*continuous, categorical"):
        parse_config(data)


def test_unknown_key_suggests():
    data = _demo_dict()
    data["chunking"] = {"perod": "1d"}
    with pytest.raises(ConfigError, match=r"chunking\.perod.*Did you mean 'period'"):
        parse_config(data)


def test_missing_required_key():
    data = _demo_dict()
    del data["source"]["timestamp_column"]
    with pytest.raises(ConfigError, match=r"source\.timestamp_column.*required"):
        parse_config(data)


def test_two_chunkings_rejected():
    data = _demo_dict()
    data["chunking"] = {"period": "1d", "size": 100}
    with pytest.raises(ConfigError, match=r"chunking.*exactly one of period, size, count"):
        parse_config(data)


def test_out_of_range_value():
    data = _demo_dict()
    data["profile"] = {"kll_k": 2}
    with pytest.raises(ConfigError, match=r"profile\.kll_k.*out of range"):
        parse_config(data)


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("monitor: x\nfeatures: [a, b\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line"):
        load_config(path)


def test_reference_range_order():
    data = _demo_dict()
    data["reference"] = {"start": "2025-05-01", "end": "2025-04-01"}
    with pytest.raises(ConfigError, match=r"reference\.end.*must be after"):
        parse_config(data)


@pytest.fixture(scope="module")
def small_table(spark, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cfg") / "src")
    df = pd.DataFrame({"id": [1, 2], "ts": pd.to_datetime(["2025-01-01", "2025-01-02"]), "age": [30.0, 40.0],
                       "city": ["a", "b"], "score": [0.1, 0.9]})
    return write_delta(spark, df, path)


def test_unknown_column_names_key_and_suggests(spark, small_table, tmp_path):
    config = make_config(small_table, [("agee", "continuous")], str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=r"features\[0\]\.name.*'agee' is not in table.*Did you mean 'age'"):
        validate_against_schema(config, spark.read.format("delta").load(small_table).schema)


def test_string_column_cannot_be_continuous(spark, small_table, tmp_path):
    config = make_config(small_table, [("city", "continuous")], str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=r"features\[0\]\.kind.*'city' has type string.*kind: categorical"):
        validate_against_schema(config, spark.read.format("delta").load(small_table).schema)


def test_missing_table_names_key(spark, tmp_path):
    config = make_config(str(tmp_path / "nope"), [("age", "continuous")], str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=r"source\.table.*cannot be read as a Delta table"):
        open_source(spark, config)


def test_timestamp_column_type_checked(spark, small_table, tmp_path):
    config = make_config(small_table, [("age", "continuous")], str(tmp_path / "out"),
                         source={"table": small_table, "id_column": "id", "timestamp_column": "city"})
    with pytest.raises(ConfigError, match=r"source\.timestamp_column.*type string"):
        validate_against_schema(config, spark.read.format("delta").load(small_table).schema)


@pytest.mark.parametrize(("section", "message"), [
    ({"multivariate": {"n_components": 1.5}}, r"multivariate\.n_components.*out of range"),
    ({"multivariate": {"n_components": 0}}, r"multivariate\.n_components.*out of range"),
    ({"multivariate": {"features": ["customer_agee"]}}, r"multivariate\.features\[0\].*Did you mean 'customer_age'"),
    ({"multivariate": {"pca": True}}, r"multivariate\.pca.*unknown key"),
    ({"multivariate": {"classifier": {"folds": 1}}}, r"multivariate\.classifier\.folds.*at least 2"),
    ({"multivariate": {"classifier": {"sample_rows": 10}}}, r"multivariate\.classifier\.sample_rows.*at least 100"),
    ({"multivariate": {"classifier": {"enable": True}}}, r"multivariate\.classifier\.enable.*Did you mean 'enabled'"),
])
def test_bad_multivariate_settings_name_the_key(section, message):
    data = {**_demo_dict(), **section}
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_feature_importance_must_be_a_non_negative_number():
    data = _demo_dict()
    data["features"][0]["importance"] = -1
    with pytest.raises(ConfigError, match=r"features\[0\]\.importance.*out of range"):
        parse_config(data)
    data["features"][0]["importance"] = 0.25
    assert parse_config(data).features[0].importance == 0.25
