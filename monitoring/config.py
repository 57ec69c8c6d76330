"""Typed monitor configuration: YAML loading and validation with errors that name the key.

Validation happens in two steps: `load_config` checks the file on its own (types, choices, period
strings); `validate_against_schema` checks it against the real source and label table schemas.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from monitoring.errors import ConfigError
from monitoring.registry import (
    CATEGORICAL_METHODS,
    CONTINUOUS_METHODS,
    DEFAULT_CONTINUOUS_METHODS,
    nannyml_rules,
    rule_names,
)
from monitoring.registry import metric as registered
from monitoring.spark_settings import check_spark_settings
from monitoring.thresholds import THRESHOLD_TYPES, ThresholdRule

PROBLEM_TYPES = ("binary", "multiclass", "regression")
NANNYML = "nannyml"
COMPATIBILITY = ("driftline", NANNYML)
FEATURE_KINDS = ("continuous", "categorical")
INCOMPLETE_CHOICES = ("keep", "drop", "append")
KLL_CHOICES = ("auto", "native", "python")  # how KLL sketches are built (monitoring.sketches.resolve_kll_impl)
PERIOD_RE = re.compile(r"^([1-9][0-9]*)(h|d|w|mo|q|y)$")
PERIOD_UNITS = {"h": "hours", "d": "days", "w": "weeks (Monday-based)", "mo": "months", "q": "quarters", "y": "years"}


@dataclass(frozen=True)
class Period:
    """A chunk period: `count` units of `unit` (h, d, w, mo, q, y)."""

    count: int
    unit: str

    @classmethod
    def parse(cls, text: str, key: str) -> Period:
        match = PERIOD_RE.match(str(text).strip())
        if not match:
            units = ", ".join(f"'{u}' ({n})" for u, n in PERIOD_UNITS.items())
            raise ConfigError(key, f"'{text}' is not a period; write a positive count and a unit, e.g. "
                                   f"'1d', '1w', '1mo', '6h'. Units: {units}")
        return cls(int(match.group(1)), match.group(2))

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    importance: float | None = None  # the model's feature importance (ranks drift, monitoring/ranking.py)


@dataclass(frozen=True)
class Source:
    table: str
    id_column: str
    timestamp_column: str


@dataclass(frozen=True)
class Outputs:
    """Model outputs. Binary: `score` (probability of the positive class); multiclass: `class_scores`
    (class label -> column of its probability); regression: `prediction` (numeric)."""

    score: str | None = None
    class_scores: dict[str, str] = field(default_factory=dict)
    prediction: str | None = None
    positive_class: str = "1"
    negative_class: str | None = None  # binary: the other label; None: any label but the positive one

    def label_classes(self, problem_type: str) -> list[str] | None:
        """The label values a classification monitor knows (others are invalid labels); None: no check."""
        if problem_type == "multiclass":
            return list(self.class_scores)
        if problem_type == "binary" and self.negative_class is not None:
            return [self.positive_class, self.negative_class]
        return None


@dataclass(frozen=True)
class Labels:
    """Ground truth; a chunk's realized metrics need `min_labelled` labelled rows and `min_coverage`."""

    table: str
    id_column: str
    label_column: str
    timestamp_column: str
    min_labelled: int = 100
    min_coverage: float = 0.1


@dataclass(frozen=True)
class Estimation:
    """Performance estimation without labels: CBPE for classification, DLE for regression (both learn
    from labelled reference rows).

    `calibration`: auto (isotonic calibration of the scores only when it lowers the expected calibration
    error on held-out reference rows, as NannyML decides; per class for multiclass), always or never.
    `business_value`: the value of each confusion cell, rows = true class, columns = prediction: binary
    [[true negative, false positive], [false negative, true positive]], multiclass K x K in the order
    of outputs.class_scores.
    """

    enabled: bool = True
    calibration: str = "auto"
    business_value: tuple[tuple[float, ...], ...] | None = None
    loss_model_rows: int = 500_000  # DLE: labelled reference rows sampled to train the loss models


CALIBRATION_CHOICES = ("auto", "always", "never")


@dataclass(frozen=True)
class Chunking:
    """Exactly one of `period`, `size` (rows per chunk) or `count` (number of chunks)."""

    period: Period | None = None
    size: int | None = None
    count: int | None = None
    incomplete: str = "keep"
    # timestamps outside [valid_from, the run's time + max_ahead) belong to no chunk (docs/chunking.md)
    valid_from: datetime = datetime(1970, 1, 1, tzinfo=timezone.utc)
    max_ahead: Period = Period(1, "y")

    def describe(self) -> str:
        return f"period={self.period}" if self.period else f"size={self.size}" if self.size else f"count={self.count}"


@dataclass(frozen=True)
class Reference:
    """The reference (the model's test period): a table, a time range of the source, or both."""

    table: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class Output:
    """Where result tables go: a directory (`path`) or a catalog schema (`schema`, e.g. main.monitoring)."""

    path: str | None = None
    schema: str | None = None

    def table(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}" if self.path else f"{self.schema}.{name}"


@dataclass(frozen=True)
class Mlflow:
    """Where runs are logged; `model_name` / `model_version`: the registered model version monitored
    (its runs get a tag naming the monitor run; see docs/alerts.md)."""

    experiment: str
    tracking_uri: str = "sqlite:///mlflow.db"
    enabled: bool = True
    model_name: str | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class Profile:
    """Sketch settings; `kll`: Spark's native KLL aggregate, the `datasketches` fallback for Spark < 4.1, or
    `auto` (native when the server's Spark version is 4.1 or newer; see docs/profiles.md)."""

    kll_k: int = 2000
    top_n: int = 100
    kll: str = "auto"


@dataclass(frozen=True)
class Drift:
    """Univariate drift: methods per column kind, histogram bins, PSI epsilon, threshold rules."""

    continuous_methods: tuple[str, ...] = DEFAULT_CONTINUOUS_METHODS
    categorical_methods: tuple[str, ...] = CATEGORICAL_METHODS
    bins: int = 10
    psi_epsilon: float = 1e-4
    std_multiplier: float = 3.0
    thresholds: tuple[ThresholdRule, ...] = ()
    min_chunk_rows: int = 50  # analysis chunks with fewer rows get a note instead of column alerts
    wasserstein_bins: int = 2048  # fine bins of the Wasserstein distance (monitoring/fine_bins.py)
    compatibility: str = "driftline"  # or NANNYML: NannyML 0.13.1's conventions (docs/statistics.md)

    @property
    def fine_bins(self) -> int:
        """The fine bins the reference is cut into: `wasserstein_bins` when Wasserstein is computed, else 0."""
        return self.wasserstein_bins if "wasserstein" in self.continuous_methods else 0


@dataclass(frozen=True)
class DomainClassifier:
    """The domain classifier: off unless enabled (it trains `folds` models per analysis chunk); at most
    `sample_rows` rows of each chunk and of the reference (docs/multivariate.md)."""

    enabled: bool = False
    sample_rows: int = 5000
    folds: int = 5


@dataclass(frozen=True)
class Multivariate:
    """PCA reconstruction error and domain classifier over `features` (default: every feature);
    `n_components`: the explained variance ratio to keep (a float in (0, 1), NannyML's 0.65) or a number of
    components (docs/multivariate.md)."""

    enabled: bool = True
    n_components: float = 0.65
    features: tuple[str, ...] = ()
    classifier: DomainClassifier = DomainClassifier()


@dataclass(frozen=True)
class Slices:
    """Slice expressions (column expressions); the `top_n` most frequent values of each in the reference."""

    expressions: tuple[str, ...] = ()
    top_n: int = 10


@dataclass(frozen=True)
class MonitorConfig:
    monitor: str
    problem_type: str
    source: Source
    features: tuple[Feature, ...]
    outputs: Outputs
    chunking: Chunking
    reference: Reference
    output: Output
    mlflow: Mlflow
    profile: Profile = Profile()
    drift: Drift = Drift()
    slices: Slices = Slices()
    labels: Labels | None = None
    spark: dict[str, str] = field(default_factory=dict)
    estimation: Estimation = Estimation()
    multivariate: Multivariate = Multivariate()

    def multivariate_columns(self) -> list[tuple[str, str]]:
        """(column, kind) of `multivariate.features` (default: every feature), in feature order."""
        chosen = set(self.multivariate.features) or {f.name for f in self.features}
        return [(f.name, f.kind) for f in self.features if f.name in chosen]

    def reconstruction_columns(self) -> list[tuple[str, str]]:
        """(column, kind) of the reconstruction error; empty when it is off or has fewer than two columns."""
        cols = self.multivariate_columns()
        return cols if self.multivariate.enabled and len(cols) >= 2 else []

    def classifier_columns(self) -> list[tuple[str, str]]:
        """(column, kind) of the domain classifier; empty when it is off."""
        return self.multivariate_columns() if self.multivariate.enabled and self.multivariate.classifier.enabled \
            else []

    def monitored_columns(self) -> list[tuple[str, str]]:
        """(column, kind) for every profiled column: features, then model outputs."""
        cols = [(f.name, f.kind) for f in self.features]
        if self.outputs.score:
            cols.append((self.outputs.score, "continuous"))
        cols += [(c, "continuous") for c in self.outputs.class_scores.values()]
        if self.outputs.prediction:
            kind = "continuous" if self.problem_type == "regression" else "categorical"
            cols.append((self.outputs.prediction, kind))
        return cols


# ---------------------------------------------------------------------------------------------- loading

class _Section:
    """A mapping read with key paths, rejecting unknown keys with a suggestion."""

    def __init__(self, data: Any, path: str, allowed: tuple[str, ...]):
        if not isinstance(data, dict):
            raise ConfigError(path or "<root>", f"expected a mapping, got {type(data).__name__}")
        unknown = [k for k in data if k not in allowed]
        if unknown:
            k = unknown[0]
            near = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise ConfigError(_join(path, str(k)), f"unknown key.{hint} Valid keys: {', '.join(allowed)}")
        self.data, self.path = data, path

    def key(self, name: str) -> str:
        return _join(self.path, name)

    def get(self, name: str, typ: type | tuple[type, ...], default: Any = ..., required: bool = False) -> Any:
        if name not in self.data or self.data[name] is None:
            if required or default is ...:
                raise ConfigError(self.key(name), "is required")
            return default
        value = self.data[name]
        if typ is int and isinstance(value, bool) or not isinstance(value, typ):
            names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise ConfigError(self.key(name), f"expected {names}, got {value!r}")
        return value

    def text(self, name: str, default: Any = ...) -> Any:
        value = self.get(name, str, default)
        if isinstance(value, str) and not value.strip():
            raise ConfigError(self.key(name), "must not be empty")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: Any = ...) -> str:
        value = self.text(name, default)
        if value is None and default is None:
            return None
        if value not in choices:
            raise ConfigError(self.key(name), f"'{value}' is not valid; choose one of: {', '.join(choices)}")
        return value

    def positive_int(self, name: str, default: Any = ..., minimum: int = 1, maximum: int | None = None) -> Any:
        value = self.get(name, int, default)
        if value is not None and (value < minimum or (maximum is not None and value > maximum)):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ConfigError(self.key(name), f"{value} is out of range; use at least {minimum}{upper}")
        return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _timestamp(value: Any, key: str) -> datetime:
    if isinstance(value, datetime):
        ts = value
    elif hasattr(value, "year") and hasattr(value, "month"):  # a YAML date
        ts = datetime(value.year, value.month, value.day)
    else:
        try:
            ts = datetime.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(key, f"'{value}' is not an ISO date or timestamp (e.g. 2025-01-01)") from None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def parse_config(data: Any) -> MonitorConfig:
    """Build a MonitorConfig from parsed YAML, validating everything that needs no data."""
    root = _Section(data, "", ("monitor", "problem_type", "source", "features", "outputs", "labels",
                               "chunking", "reference", "output", "mlflow", "profile", "drift", "slices", "spark",
                               "estimation", "multivariate", "compatibility"))
    monitor = root.text("monitor")
    if not re.match(r"^[A-Za-z0-9_.-]+$", monitor):
        raise ConfigError("monitor", f"'{monitor}' may only hold letters, digits, '_', '-' and '.'")
    problem_type = root.choice("problem_type", PROBLEM_TYPES)

    s = _Section(root.get("source", dict), "source", ("table", "id_column", "timestamp_column"))
    source = Source(s.text("table"), s.text("id_column"), s.text("timestamp_column"))

    raw_features = root.get("features", list)
    if not raw_features:
        raise ConfigError("features", "list at least one feature as {name: ..., kind: continuous|categorical}")
    features = []
    for i, item in enumerate(raw_features):
        f = _Section(item, f"features[{i}]", ("name", "kind", "importance"))
        importance = f.get("importance", (int, float), None)
        if importance is not None and (isinstance(importance, bool) or not 0 <= importance < math.inf):
            raise ConfigError(f"features[{i}].importance", f"{importance!r} is out of range; use a number >= 0 "
                                                           "(e.g. the model's feature importance)")
        features.append(Feature(f.text("name"), f.choice("kind", FEATURE_KINDS),
                                float(importance) if importance is not None else None))
    dupes = sorted({f.name for f in features if [g.name for g in features].count(f.name) > 1})
    if dupes:
        raise ConfigError("features", f"column(s) listed twice: {', '.join(dupes)}")

    o = _Section(root.get("outputs", dict), "outputs",
                 ("score", "class_scores", "prediction", "positive_class", "negative_class"))
    class_scores = o.get("class_scores", dict, {})
    positive = _label_text(o.get("positive_class", (str, int, bool), "1"))
    negative = o.get("negative_class", (str, int, bool), "0" if positive == "1" else None)
    if negative is not None and _label_text(negative) == positive:
        raise ConfigError("outputs.negative_class", f"'{negative}' is also the positive class; give the other label")
    outputs = Outputs(o.text("score", None), {_label_text(k): str(v) for k, v in class_scores.items()},
                      o.text("prediction", None), positive, _label_text(negative) if negative is not None else None)
    _check_outputs(problem_type, outputs)

    labels = None
    if root.get("labels", dict, None) is not None:
        lab = _Section(root.data["labels"], "labels", ("table", "id_column", "label_column", "timestamp_column",
                                                       "min_labelled", "min_coverage"))
        coverage = lab.get("min_coverage", (int, float), 0.1)
        if not 0 <= coverage <= 1:
            raise ConfigError("labels.min_coverage", f"{coverage} is not a share in [0, 1]")
        labels = Labels(lab.text("table"), lab.text("id_column", source.id_column), lab.text("label_column"),
                        lab.text("timestamp_column"), lab.positive_int("min_labelled", 100), float(coverage))

    c = _Section(root.get("chunking", dict), "chunking", ("period", "size", "count", "incomplete", "valid_from",
                                                          "max_ahead"))
    given = [k for k in ("period", "size", "count") if c.data.get(k) is not None]
    if len(given) != 1:
        raise ConfigError("chunking", f"set exactly one of period, size, count (got {', '.join(given) or 'none'})")
    period = Period.parse(c.get("period", (str,)), "chunking.period") if "period" in given else None
    valid_from = _timestamp(c.data["valid_from"], "chunking.valid_from") if c.data.get("valid_from") is not None \
        else Chunking.valid_from
    max_ahead = Period.parse(c.get("max_ahead", (str,)), "chunking.max_ahead") if c.data.get("max_ahead") is not None \
        else Chunking.max_ahead
    chunking = Chunking(period, c.positive_int("size", None), c.positive_int("count", None),
                        c.choice("incomplete", INCOMPLETE_CHOICES, "keep"), valid_from, max_ahead)

    r = _Section(root.get("reference", dict), "reference", ("table", "start", "end"))
    start = _timestamp(r.data["start"], "reference.start") if r.data.get("start") is not None else None
    end = _timestamp(r.data["end"], "reference.end") if r.data.get("end") is not None else None
    reference = Reference(r.text("table", None), start, end)
    if reference.table is None and (start is None or end is None):
        raise ConfigError("reference", "give a reference table, or start and end of a time range of the source")
    if start and end and start >= end:
        raise ConfigError("reference.end", f"{end.isoformat()} must be after reference.start {start.isoformat()}")

    out = _Section(root.get("output", dict), "output", ("path", "schema"))
    output = Output(out.text("path", None), out.text("schema", None))
    if (output.path is None) == (output.schema is None):
        raise ConfigError("output", "set exactly one of path (a directory) or schema (catalog.schema)")

    m = _Section(root.get("mlflow", dict, {}), "mlflow", ("experiment", "tracking_uri", "enabled", "model_name",
                                                          "model_version"))
    version = m.get("model_version", (str, int), None)
    mlflow_conf = Mlflow(m.text("experiment", f"driftline/{monitor}"), m.text("tracking_uri", "sqlite:///mlflow.db"),
                         m.get("enabled", bool, True), m.text("model_name", None),
                         str(version) if version is not None else None)
    if mlflow_conf.model_version and not mlflow_conf.model_name:
        raise ConfigError("mlflow.model_version", "set mlflow.model_name too (the registered model's name)")

    p = _Section(root.get("profile", dict, {}), "profile", ("kll_k", "top_n", "kll"))
    profile = Profile(p.positive_int("kll_k", 2000, minimum=8, maximum=65535),
                      p.positive_int("top_n", 100, maximum=100_000), p.choice("kll", KLL_CHOICES, "auto"))

    outputs_cols = [c for c in (outputs.score, outputs.prediction, *outputs.class_scores.values()) if c]
    drift = _drift(root.get("drift", dict, {}), [f.name for f in features] + outputs_cols)
    compatibility = root.choice("compatibility", COMPATIBILITY, "driftline")
    if compatibility == NANNYML:  # NannyML's default rules first: the config's own rules still win
        drift = replace(drift, compatibility=NANNYML, thresholds=nannyml_rules(drift.std_multiplier) + drift.thresholds)
    sl = _Section(root.get("slices", dict, {}), "slices", ("expressions", "top_n"))
    expressions = sl.get("expressions", list, [])
    for i, e in enumerate(expressions):
        if not isinstance(e, str) or not e.strip():
            raise ConfigError(f"slices.expressions[{i}]", "expected a non-empty column expression, e.g. region")
    slices = Slices(tuple(e.strip() for e in expressions), sl.positive_int("top_n", 10, maximum=1000))

    spark = {str(k): str(v) for k, v in root.get("spark", dict, {}).items()}
    check_spark_settings(spark)
    return MonitorConfig(monitor, problem_type, source, tuple(features), outputs, chunking, reference,
                         output, mlflow_conf, profile, drift, slices, labels, spark,
                         _estimation(root.get("estimation", dict, {}), problem_type, list(outputs.class_scores)),
                         _multivariate(root.get("multivariate", dict, {}), [f.name for f in features]))


def _multivariate(data: dict, features: list[str]) -> Multivariate:
    m = _Section(data, "multivariate", ("enabled", "n_components", "features", "classifier"))
    n = m.get("n_components", (int, float), 0.65)
    if isinstance(n, bool) or (isinstance(n, float) and not 0 < n < 1) or (isinstance(n, int) and n < 1):
        raise ConfigError("multivariate.n_components", f"{n!r} is out of range; use a float in (0, 1) (explained "
                                                       "variance to keep) or a whole number of components >= 1")
    chosen = m.get("features", list, [])
    for i, name in enumerate(chosen):
        if name not in features:
            near = difflib.get_close_matches(str(name), features, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"multivariate.features[{i}]", f"'{name}' is not a configured feature.{hint}")
    c = _Section(m.get("classifier", dict, {}), "multivariate.classifier", ("enabled", "sample_rows", "folds"))
    classifier = DomainClassifier(c.get("enabled", bool, False), c.positive_int("sample_rows", 5000, minimum=100),
                                  c.positive_int("folds", 5, minimum=2, maximum=20))
    return Multivariate(m.get("enabled", bool, True), n, tuple(chosen), classifier)


def _estimation(data: dict, problem_type: str, class_labels: list[str]) -> Estimation:
    e = _Section(data, "estimation", ("enabled", "calibration", "business_value", "loss_model_rows"))
    value = e.get("business_value", list, None)
    matrix = None
    if value is not None:
        k = len(class_labels) if problem_type == "multiclass" else 2
        ok = len(value) == k and all(isinstance(row, list) and len(row) == k and
                                     all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
                                     for row in value)
        if not ok:
            shape = f"a {k} x {k} list of lists in the order {class_labels}" if problem_type == "multiclass" \
                else "[[tn, fp], [fn, tp]]"
            raise ConfigError("estimation.business_value", f"expected {shape}: the value of each "
                                                           "confusion cell, rows = true class, columns = prediction")
        matrix = tuple(tuple(float(v) for v in row) for row in value)
    return Estimation(e.get("enabled", bool, True), e.choice("calibration", CALIBRATION_CHOICES, "auto"), matrix,
                      e.positive_int("loss_model_rows", 500_000, minimum=100))


def _methods(d: _Section, name: str, valid: tuple[str, ...], default: tuple[str, ...] | None = None) -> tuple[str, ...]:
    chosen = d.get(name, list, list(default or valid))
    for i, m in enumerate(chosen):
        if m not in valid:
            near = difflib.get_close_matches(str(m), valid, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"drift.{name}[{i}]", f"unknown method '{m}'.{hint} Valid: {', '.join(valid)}")
    return tuple(dict.fromkeys(chosen))


def _drift(data: Any, columns: list[str]) -> Drift:
    d = _Section(data, "drift", ("continuous_methods", "categorical_methods", "bins", "psi_epsilon", "std_multiplier",
                                 "thresholds", "min_chunk_rows", "wasserstein_bins"))
    multiplier = d.get("std_multiplier", (int, float), 3.0)
    if not 0 < multiplier <= 20:
        raise ConfigError("drift.std_multiplier", f"{multiplier} is out of range; use a positive number like 3")
    epsilon = d.get("psi_epsilon", (int, float), 1e-4)
    if not 0 < epsilon < 0.1:
        raise ConfigError("drift.psi_epsilon", f"{epsilon} is out of range; use a small positive share like 1e-4")
    rules = []
    for i, item in enumerate(d.get("thresholds", list, [])):
        t = _Section(item, f"drift.thresholds[{i}]", ("metric", "type", "columns", "comparison", "std_lower",
                                                       "std_upper", "lower", "upper", "alpha"))
        metric = t.text("metric")
        if metric not in rule_names() and registered(metric) is None:
            near = difflib.get_close_matches(metric, rule_names(), n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise ConfigError(t.key("metric"), f"unknown metric '{metric}'.{hint} Valid (docs/metrics.md): "
                                               f"{', '.join(rule_names())}")
        kind = t.choice("type", THRESHOLD_TYPES, "std")
        cols = t.get("columns", (list, str), [])
        cols = [cols] if isinstance(cols, str) else cols
        for c in cols:
            if c not in columns:
                raise ConfigError(t.key("columns"), f"'{c}' is not a monitored column; choose from: "
                                                   f"{', '.join(columns)}")
        comparison = t.choice("comparison", ("BASELINE", "CONSECUTIVE", "NONE", "ESTIMATED"), None)
        number = (int, float)
        if kind == "pvalue" and not metric.endswith("_pvalue"):
            raise ConfigError(t.key("type"), f"pvalue thresholds apply to p-value metrics "
                                             f"(kolmogorov_smirnov_pvalue, chi2_pvalue), not '{metric}'")
        opened = "std_upper" in t.data and t.data["std_upper"] is None  # null opens the side (docs/config.md)
        upper = None if opened else t.get("std_upper", number, float(multiplier) if kind == "std" else None)
        rule = ThresholdRule(metric, kind, tuple(cols), comparison, t.get("std_lower", number, None), upper,
                             t.get("lower", number, None), t.get("upper", number, None), t.get("alpha", number, 0.05))
        if kind == "constant" and rule.lower is None and rule.upper is None:
            raise ConfigError(f"drift.thresholds[{i}]", "a constant threshold needs lower and/or upper")
        if not 0 < rule.alpha < 1:
            raise ConfigError(t.key("alpha"), f"{rule.alpha} is not a significance level in (0, 1)")
        rules.append(rule)
    return Drift(_methods(d, "continuous_methods", CONTINUOUS_METHODS, DEFAULT_CONTINUOUS_METHODS),
                 _methods(d, "categorical_methods", CATEGORICAL_METHODS),
                 d.positive_int("bins", 10, minimum=2, maximum=1000), float(epsilon), float(multiplier), tuple(rules),
                 d.positive_int("min_chunk_rows", 50, minimum=1),
                 d.positive_int("wasserstein_bins", 2048, minimum=16, maximum=65536))


def _check_outputs(problem_type: str, outputs: Outputs) -> None:
    if problem_type == "binary" and not outputs.score:
        raise ConfigError("outputs.score", "binary models need the score column (probability of the positive class)")
    if problem_type == "multiclass" and len(outputs.class_scores) < 2:
        raise ConfigError("outputs.class_scores", "multiclass models need a mapping class -> score column, "
                                                  "at least two classes")
    if problem_type == "regression" and not outputs.prediction:
        raise ConfigError("outputs.prediction", "regression models need the prediction column")


def load_config(path: str | Path) -> MonitorConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("<file>", f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("<file>", f"'{path}' is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data)


# ------------------------------------------------------------------------------------- schema checks

NUMERIC_TYPES = ("byte", "short", "integer", "long", "float", "double", "decimal")
TIME_TYPES = ("timestamp", "timestamp_ntz", "date")


def _type_name(dtype: Any) -> str:
    return dtype.typeName()


def _label_text(value: Any) -> str:
    """A class label from YAML as Spark writes the label as text (true/false for booleans)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _require_column(fields: dict[str, Any], column: str, key: str, table: str, types: tuple[str, ...] = ()) -> None:
    if column not in fields:
        near = difflib.get_close_matches(column, list(fields), n=3)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise ConfigError(key, f"column '{column}' is not in table '{table}'.{hint} "
                               f"Columns: {', '.join(sorted(fields))}")
    if types and _type_name(fields[column]) not in types:
        raise ConfigError(key, f"column '{column}' of table '{table}' has type {fields[column].simpleString()}; "
                               f"expected one of: {', '.join(types)}")


def _id_family(dtype: Any) -> str:
    name = _type_name(dtype)
    return "number" if name in NUMERIC_TYPES else name


def _check_id_types(source: Any, labels: Any, config: MonitorConfig) -> None:
    """The label ids join the prediction ids: a number against text would cast every id (and fail on the
    first id that is no number), so both must be numbers or both the same type."""
    if _id_family(source) != _id_family(labels):
        raise ConfigError("labels.id_column", f"column '{config.labels.id_column}' of {config.labels.table} has type "
                                              f"{labels.simpleString()} but the prediction ids (source.id_column "
                                              f"'{config.source.id_column}' of {config.source.table}) are "
                                              f"{source.simpleString()}: the labels join the predictions by id, so "
                                              "cast one table's id to the other's type upstream")


def validate_against_schema(config: MonitorConfig, source_schema: Any, labels_schema: Any = None) -> None:
    """Check every configured column against the real table schemas (pyspark StructType)."""
    fields = {f.name: f.dataType for f in source_schema.fields}
    table = config.source.table
    _require_column(fields, config.source.id_column, "source.id_column", table)
    _require_column(fields, config.source.timestamp_column, "source.timestamp_column", table, TIME_TYPES)
    for i, feat in enumerate(config.features):
        types = NUMERIC_TYPES + ("boolean",) if feat.kind == "continuous" else ()
        _require_column(fields, feat.name, f"features[{i}].name", table)
        if types and _type_name(fields[feat.name]) not in types:
            raise ConfigError(f"features[{i}].kind", f"column '{feat.name}' has type "
                                                     f"{fields[feat.name].simpleString()}, which cannot be "
                                                     "continuous; use kind: categorical")
    out = config.outputs
    if out.score:
        _require_column(fields, out.score, "outputs.score", table, NUMERIC_TYPES)
    for cls, col in out.class_scores.items():
        _require_column(fields, col, f"outputs.class_scores.{cls}", table, NUMERIC_TYPES)
    if out.prediction:
        types = NUMERIC_TYPES if config.problem_type == "regression" else ()
        _require_column(fields, out.prediction, "outputs.prediction", table, types)
    if config.labels and labels_schema is not None:
        lf = {f.name: f.dataType for f in labels_schema.fields}
        lt = config.labels.table
        _require_column(lf, config.labels.id_column, "labels.id_column", lt)
        types = NUMERIC_TYPES if config.problem_type == "regression" else ()
        _require_column(lf, config.labels.label_column, "labels.label_column", lt, types)
        _require_column(lf, config.labels.timestamp_column, "labels.timestamp_column", lt, TIME_TYPES)
        _check_id_types(fields[config.source.id_column], lf[config.labels.id_column], config)
