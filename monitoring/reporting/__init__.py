"""Reporting: MLflow runs and console summaries built from stored results."""
