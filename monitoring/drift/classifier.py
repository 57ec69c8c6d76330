"""Multivariate drift by a domain classifier (NannyML's DomainClassifierCalculator).

Per analysis chunk a LightGBM classifier learns to tell the chunk's rows (target 1) from the reference's
(target 0) on the multivariate features; the value is the ROC AUC of its out-of-fold scores over a
stratified K-fold split (shuffled, fixed seed), pooled over the folds: about 0.5 when the rows are
indistinguishable, towards 1 when the joint distribution changed, correlations included. Constant
thresholds (NannyML's defaults: alert outside [0.45, 0.65]).

Rows, not states: a classifier needs them. Bounded samples keep it affordable: one extra Spark job per
run reads the reference and the analysis chunks whose results are recomputed, keeps a deterministic
pseudo-random subset of at most `sample_rows` rows of each (a hash of the id, so reruns draw the same
rows) and collects them; the models train on the driver. Whole table only (no slices), analysis chunks
only (no reference chunk values: the thresholds are constant). Details in docs/multivariate.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from monitoring.chunking import CHUNK_COL, ChunkInfo
from monitoring.drift.compare import ANALYSIS, NO_COMPARISON, MetricResult
from monitoring.drift.reconstruction import MULTIVARIATE
from monitoring.performance.results import TABLE
from monitoring.sketches import CONTINUOUS, finite
from monitoring.stores.tables import quote_part

CLASSIFIER_AUC = "classifier_auc"
SEED = 13
OVERSAMPLE = 1.2  # draw 20% more than needed, then keep the rows with the smallest hash: exactly min(cap, n)
_CHUNK, _U, _REF = CHUNK_COL, "_dl_u", -1


def _uniform(id_column: str) -> F.Column:
    """A pseudo-random number in [0, 1) per row from its id (the same row draws the same number)."""
    bits = F.xxhash64(F.col(quote_part(id_column)), F.lit(SEED)).bitwiseAND(F.lit((1 << 52) - 1))
    return bits.cast("double") / F.lit(float(1 << 52))


def sample(reference: DataFrame, analysis: DataFrame, chunk_rows: dict[int, int], reference_rows: int,
           columns: list[tuple[str, str]], id_column: str, cap: int) -> pd.DataFrame:
    """At most `cap` rows of the reference and of each chunk in `chunk_rows` (chunk index -> rows) of the
    chunked `analysis`, one Spark job; column CHUNK_COL holds the chunk index (-1: the reference), rows
    ordered by it and the id."""
    values = [(finite(F.col(quote_part(n))) if kind == CONTINUOUS else F.col(quote_part(n)).cast("string")).alias(n)
              for n, kind in columns]
    share = {i: min(1.0, OVERSAMPLE * cap / n) for i, n in chunk_rows.items() if n}
    if not share:
        return pd.DataFrame(columns=[_CHUNK, id_column, *[n for n, _ in columns]])
    chunk = F.col(_CHUNK).cast("int")
    rate = F.element_at(F.create_map(*[F.lit(v) for kv in share.items() for v in kv]), chunk)
    ref = reference.select(F.lit(_REF).alias(_CHUNK), F.col(quote_part(id_column)), *values)
    ref = ref.withColumn(_U, _uniform(id_column)).where(F.col(_U) < min(1.0, OVERSAMPLE * cap / max(reference_rows, 1)))
    ana = analysis.where(chunk.isin(*share)).select(chunk.alias(_CHUNK), F.col(quote_part(id_column)), *values)
    ana = ana.withColumn(_U, _uniform(id_column)).where(F.col(_U) < rate)
    rows = ref.unionByName(ana).toPandas()
    rows = rows.sort_values([_CHUNK, _U, id_column]).groupby(_CHUNK, sort=False).head(cap)
    return rows.sort_values([_CHUNK, id_column]).drop(columns=[_U]).reset_index(drop=True)


def features(frame: pd.DataFrame, columns: list[tuple[str, str]]) -> pd.DataFrame:
    """The model matrix: continuous columns as floats (NaN: missing), categorical ones as pandas
    categories over the values of `frame` (LightGBM's native categorical splits)."""
    out = {}
    for name, kind in columns:
        if kind == CONTINUOUS:
            out[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
        else:
            values = frame[name].astype(object).where(frame[name].notna(), None)
            out[name] = pd.Categorical(values, categories=sorted({v for v in values if v is not None}))
    return pd.DataFrame(out, index=frame.index)


def out_of_fold_scores(x: pd.DataFrame, y: np.ndarray, folds: int) -> np.ndarray:
    """Each row's score from the model trained on the other folds (stratified, shuffled, seeded)."""
    from lightgbm import LGBMClassifier
    from sklearn.model_selection import StratifiedKFold

    scores = np.empty(len(y))
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED).split(x, y):
        model = LGBMClassifier(random_state=SEED, deterministic=True, force_row_wise=True, n_jobs=1, verbose=-1)
        model.fit(x.iloc[train], y[train])
        scores[test] = model.predict_proba(x.iloc[test])[:, 1]
    return scores


def chunk_auc(reference: pd.DataFrame, chunk: pd.DataFrame, columns: list[tuple[str, str]],
              folds: int) -> float | None:
    """Cross-validated ROC AUC of reference (0) vs chunk (1) rows; None when either side has fewer rows
    than folds."""
    from sklearn.metrics import roc_auc_score

    if len(reference) < folds or len(chunk) < folds:
        return None
    both = pd.concat([reference, chunk], ignore_index=True)
    y = np.r_[np.zeros(len(reference)), np.ones(len(chunk))]
    return float(roc_auc_score(y, out_of_fold_scores(features(both, columns), y, folds)))


def classifier_results(rows: pd.DataFrame, chunks: dict[int, tuple[ChunkInfo, int]], columns: list[tuple[str, str]],
                       folds: int) -> list[MetricResult]:
    """One `classifier_auc` result per analysis chunk of `chunks` (index -> (chunk, rows)) from the sampled
    `rows`; thresholds are applied by the caller."""
    reference = rows[rows[_CHUNK] == _REF]
    out = []
    for index, (chunk, row_count) in sorted(chunks.items()):
        auc = chunk_auc(reference, rows[rows[_CHUNK] == index], columns, folds)
        out.append(MetricResult(ANALYSIS, chunk, "", "", TABLE, "table", MULTIVARIATE, CLASSIFIER_AUC, NO_COMPARISON,
                                auc, row_count, note=None if auc is not None else "too few rows"))
    return out
