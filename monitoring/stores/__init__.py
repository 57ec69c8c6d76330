"""The store layer: Delta tables read and written, and nothing else. `tables` (naming, versioned reads,
one-commit writes), `delta_log` (a local table's log without Spark), one module per result table:
`profiles`, `reference`, `metrics`, `estimators` (docs/architecture.md)."""
