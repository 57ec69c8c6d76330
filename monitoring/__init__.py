"""Driftline: Spark-native model monitoring.

The public API (monitoring/api.py), imported on first use so that `import monitoring` stays light:

    import monitoring as dl
    results = dl.Monitor.from_yaml("conf/demo.yaml").run(fit=True)
    results.incidents(); results.to_pandas(); results.plot()
"""

__version__ = "0.1.0"
__all__ = ["Monitor", "Results", "load_config", "parse_config", "__version__"]


def __getattr__(name: str):
    if name in ("Monitor", "Results"):
        from monitoring import api

        return getattr(api, name)
    if name in ("load_config", "parse_config"):
        from monitoring import config

        return getattr(config, name)
    raise AttributeError(f"module 'monitoring' has no attribute {name!r}")
