"""Realized performance: per-chunk label aggregates from the Spark pass, metrics from them."""
