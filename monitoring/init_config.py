"""`driftline init --table T`: a draft config for a predictions table, from its schema and one sampled
query (docs/config.md, "Drafting a config").

The roles come from the column names and types, the kinds from a sample of SAMPLE_ROWS rows:
- timestamp: the first timestamp or date column (names with ts/time/date first);
- id: `id` or a `*_id` column unique in the sample;
- outputs: a score column (`score`, `y_score`, `proba`, `probability`, `prob`) in [0, 1] makes a binary
  model; two or more `p_<class>` / `proba_<class>` columns a multiclass one; a prediction column
  (`prediction`, `pred`, `y_pred`) alone, numeric, a regression;
- features: numeric columns with more than CATEGORICAL_MAX distinct sampled values are continuous, the
  others and text categorical; text unique in the sample (an id, free text) is left out, with a note.
Chunking is weekly, or daily/monthly so that the table's time span gives tens of chunks; the reference
is the first third of that span. The draft is validated (`parse_config`) before it is written.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from monitoring.config import NUMERIC_TYPES, TIME_TYPES, parse_config
from monitoring.stores.tables import quote_part, read_delta

SAMPLE_ROWS = 10_000
CATEGORICAL_MAX = 20
SCORE_NAMES = ("score", "y_score", "proba", "probability", "prob")
PREDICTION_NAMES = ("prediction", "pred", "y_pred", "predicted")
CLASS_SCORE = re.compile(r"^(?:p|proba|prob|score)_(.+)$")


def draft(spark: SparkSession, table: str, monitor: str | None = None) -> tuple[dict, list[str]]:
    """The draft config (a dict, as YAML gives) and notes on what was guessed or left out."""
    df = read_delta(spark, table, "--table").df
    types = {f.name: f.dataType.typeName() for f in df.schema.fields}
    sample = df.limit(SAMPLE_ROWS)
    stats = sample.agg(F.count(F.lit(1)).alias("_rows"), *[
        F.approx_count_distinct(quote_part(c)).alias(f"d_{i}") for i, c in enumerate(types)], *[
        F.min(quote_part(c)).alias(f"lo_{i}") for i, c in enumerate(types) if types[c] in NUMERIC_TYPES + TIME_TYPES],
        *[F.max(quote_part(c)).alias(f"hi_{i}") for i, c in enumerate(types)
          if types[c] in NUMERIC_TYPES + TIME_TYPES]).collect()[0].asDict()
    rows = stats["_rows"] or 1
    names = list(types)
    distinct = {c: stats[f"d_{i}"] for i, c in enumerate(names)}
    lo = {c: stats.get(f"lo_{i}") for i, c in enumerate(names)}
    hi = {c: stats.get(f"hi_{i}") for i, c in enumerate(names)}
    notes: list[str] = []

    times = [c for c in names if types[c] in TIME_TYPES]
    if not times:
        raise ValueError(f"table {table} has no timestamp or date column: Driftline cuts chunks by time "
                         "(or set chunking.size/count by hand)")
    ts = sorted(times, key=lambda c: not re.search(r"ts|time|date", c, re.I))[0]
    ids = [c for c in names if (c.lower() == "id" or c.lower().endswith("_id")) and distinct[c] >= 0.95 * rows]
    id_column = ids[0] if ids else next((c for c in names if c not in times and distinct[c] >= 0.95 * rows
                                         and types[c] in ("string", "long", "integer")), None)
    if id_column is None:
        raise ValueError(f"table {table} has no column unique per row to use as source.id_column")

    numeric = [c for c in names if types[c] in NUMERIC_TYPES]
    class_scores = {m.group(1): c for c in numeric if (m := CLASS_SCORE.match(c.lower()))
                    and lo[c] is not None and lo[c] >= 0 and hi[c] <= 1}
    score = next((c for c in numeric if c.lower() in SCORE_NAMES and lo[c] is not None and lo[c] >= 0 and hi[c] <= 1),
                 None)
    prediction = next((c for c in names if c.lower() in PREDICTION_NAMES), None)
    if len(class_scores) >= 2:
        problem, outputs = "multiclass", {"class_scores": class_scores, **({"prediction": prediction} if prediction
                                                                           else {})}
    elif score:
        problem, outputs = "binary", {"score": score, **({"prediction": prediction} if prediction else {}),
                                      "positive_class": 1}
        notes.append("outputs.positive_class: 1 is a guess; set it to the label of the positive class")
    elif prediction and types[prediction] in NUMERIC_TYPES:
        problem, outputs = "regression", {"prediction": prediction}
    else:
        raise ValueError(f"table {table}: no model output recognised (a score in [0, 1] named one of "
                         f"{', '.join(SCORE_NAMES)}, p_<class> columns, or a numeric prediction); "
                         "write outputs by hand")

    used = {ts, id_column, *[c for c in outputs.values() if isinstance(c, str)], *class_scores.values()}
    features = []
    for c in names:
        if c in used or types[c] in TIME_TYPES:
            continue
        if types[c] in NUMERIC_TYPES and distinct[c] > CATEGORICAL_MAX:
            features.append({"name": c, "kind": "continuous"})
        elif types[c] in NUMERIC_TYPES + ("string", "boolean"):
            if types[c] == "string" and distinct[c] > 0.5 * rows and rows >= 100:
                notes.append(f"left out '{c}': nearly unique text in the sample (an id or free text)")
                continue
            features.append({"name": c, "kind": "categorical"})
        else:
            notes.append(f"left out '{c}': type {types[c]} is neither numeric nor text")

    span = df.agg(F.min(quote_part(ts)), F.max(quote_part(ts))).collect()[0]
    first, last = span[0], span[1]
    days = max(1.0, (last - first).total_seconds() / 86400) if first and last else 365.0
    period = "1d" if days <= 90 else "1w" if days <= 3 * 365 else "1mo"
    start = first.date() if isinstance(first, datetime) else first
    end = start + timedelta(days=max(1, int(days / 3))) if start else None
    name = monitor or re.sub(r"\W+", "_", table.rstrip("/").split("/")[-1].split(".")[-1]).strip("_") or "model"
    config = {"monitor": name, "problem_type": problem,
              "source": {"table": table, "id_column": id_column, "timestamp_column": ts},
              "features": features, "outputs": outputs, "chunking": {"period": period},
              "reference": {"start": str(start), "end": str(end)},
              "output": {"path": f"output/{name}"},
              "mlflow": {"experiment": f"driftline/{name}", "tracking_uri": "sqlite:///mlflow.db"}}
    notes.append("reference: the first third of the table's time span; set it to the model's test period")
    notes.append("labels: none; add a labels section (table, id_column, label_column, timestamp_column) for "
                 "realized performance")
    parse_config(config)  # the draft is a valid config
    return config, notes


def to_yaml(config: dict, notes: list[str]) -> str:
    header = "".join(f"# {n}\n" for n in ["Drafted by `driftline init` (docs/config.md); check it:", *notes])
    return header + yaml.safe_dump(config, sort_keys=False)
