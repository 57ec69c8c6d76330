"""NannyML 0.13.1's decision whether a class's scores need calibration (`nannyml.calibration.
needs_calibration`), for `compatibility: nannyml`: on the labelled reference rows in the reference's order,
10 stratified 90/10 splits (scikit-learn's StratifiedShuffleSplit, seed 42), isotonic regression fitted on each
train part, and the expected calibration error of the pooled test parts, raw against calibrated, on 10
equal-count bins. Driftline's own `auto` runs the same test on its score bins (monitoring/performance/cbpe.py)."""

from __future__ import annotations

import numpy as np

BIN_COUNT, SPLIT_COUNT, TEST_SIZE, SEED = 10, 10, 0.1, 42


def needs_calibration(y: np.ndarray, p: np.ndarray) -> bool:
    """Whether isotonic calibration lowers the held-out expected calibration error of scores `p` for the
    0/1 targets `y` (rows in the reference's order): NannyML's rule, its splits and bins."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedShuffleSplit

    y, p = np.asarray(y, float), np.asarray(p, float)
    if len(np.unique(y)) == 1 or roc_auc_score(y, p) > 0.999:
        return False
    tests, raw, calibrated = [], [], []
    for train, test in StratifiedShuffleSplit(SPLIT_COUNT, test_size=TEST_SIZE, random_state=SEED).split(p, y):
        model = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(p[train], y[train])
        tests.append(y[test])
        raw.append(p[test])
        calibrated.append(model.predict(p[test]))
    y_test = np.concatenate(tests)
    return _ece(y_test, np.concatenate(raw)) > _ece(y_test, np.concatenate(calibrated))


def _ece(y: np.ndarray, p: np.ndarray) -> float:
    """NannyML's expected calibration error: rows sorted by p (numpy's default argsort), BIN_COUNT bins of
    len // BIN_COUNT rows (the remainder in the last; len // 2 bins of 2 rows up to 2 x BIN_COUNT rows)."""
    n = len(p)
    bins = BIN_COUNT if n > 2 * BIN_COUNT else n // 2
    if bins < 2:
        raise ValueError(f"{n} held-out rows cannot be cut into 2 calibration bins")
    edges = list(range(0, n + 1, n // bins))
    edges[-1] = n
    order = p.argsort()
    p, y = p[order], y[order]
    return float(np.sum([(b - a) / n * abs(np.mean(p[a:b]) - np.mean(y[a:b]))
                         for a, b in zip(edges[:-1], edges[1:], strict=True)]))
