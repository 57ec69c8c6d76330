"""Slices: column expressions whose most frequent reference values get their own profiles and drift.

Expressions come from config, so they are checked twice before Spark runs them: a lexical allowlist
(column names, literals, operators, CASE/CAST and a fixed set of deterministic built-in functions; no
statement separators, comments, subqueries or other functions, so no UDFs) and then Spark's own
parser and analyzer against the source schema (`F.expr` in a select), which must yield one atomic value.
"""

from __future__ import annotations

import re

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, MapType, StructType

from monitoring.errors import ConfigError
from monitoring.stores.tables import first_line

SLICE_KEY, SLICE_VALUE = "_dl_slice_key", "_dl_slice_value"
WHOLE = ("", "")  # slice key and value of the whole table

ALLOWED_FUNCTIONS = frozenset({
    "abs", "bround", "ceil", "ceiling", "char_length", "coalesce", "concat", "concat_ws", "date_format",
    "date_trunc", "day", "dayofmonth", "dayofweek", "floor", "format_number", "greatest", "hour", "if", "ifnull",
    "initcap", "isnotnull", "isnull", "least", "left", "length", "lower", "lpad", "ltrim", "month", "nanvl",
    "nullif", "nvl", "pmod", "quarter", "replace", "right", "round", "rpad", "rtrim", "sign",
    "split_part", "substr", "substring", "to_date", "translate", "trim", "try_cast", "upper", "weekofyear",
    "width_bucket", "year",
})
KEYWORDS = frozenset({
    "and", "as", "between", "bigint", "boolean", "case", "cast", "date", "decimal", "div", "double", "else", "end",
    "false", "float", "ilike", "in", "int", "integer", "is", "like", "not", "null", "or", "smallint",
    "string", "then", "timestamp", "timestamp_ntz", "tinyint", "true", "when",
})
# bounded cost: a slice value is a short label, so functions that build a string as long as an argument take
# an integer literal up to a cap there (lpad/rpad's length, format_number's decimals), regular expressions
# (rlike, regexp_extract: backtracking without bound) are not allowed, and an expression is at most MAX_TEXT long
SIZED = {"lpad": 256, "rpad": 256, "format_number": 32}
MAX_TEXT = 1000
_CALLABLE_KEYWORDS = frozenset({"cast", "in", "not", "and", "or", "decimal", "when", "then", "else", "is"})
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<quoted>`(?:[^`]|``)+`)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?(?:BD|[LSYD])?|\.\d+)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>::|<=>|<>|!=|<=|>=|\|\||[-+*/%=<>!&|^~(),.\[\]:])
""", re.VERBOSE)


def check_expression(text: str, columns: list[str], key: str) -> None:
    """Reject anything but a column expression built from the allowlist (lexical check)."""
    if "--" in text or "/*" in text:
        raise ConfigError(key, "comments are not allowed in a slice expression")
    if len(text) > MAX_TEXT:
        raise ConfigError(key, f"a slice expression is at most {MAX_TEXT} characters long (got {len(text)})")
    names = {c.lower() for c in columns}
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ConfigError(key, f"'{text[pos]}' at position {pos} is not allowed in a slice expression; "
                                   "write a column expression such as lower(region) or "
                                   "CASE WHEN age >= 60 THEN 'senior' ELSE 'other' END")
        if m.lastgroup != "space":
            tokens.append((m.lastgroup, m.group()))
        pos = m.end()
    for i, (kind, tok) in enumerate(tokens):
        after = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        before = tokens[i - 1][1] if i > 0 else ""
        if kind == "quoted" and tok[1:-1].replace("``", "`").lower() not in names and before != ".":
            raise ConfigError(key, f"{tok} is not a column of the source table")
        if kind != "word":
            continue
        word = tok.lower()
        if after == "(":
            if word not in ALLOWED_FUNCTIONS and word not in _CALLABLE_KEYWORDS:
                raise ConfigError(key, f"function '{tok}' is not allowed in a slice expression (no subqueries or "
                                       f"user functions); allowed: {', '.join(sorted(ALLOWED_FUNCTIONS))}")
            if word in SIZED:
                _check_size(tok, SIZED[word], _arguments(tokens, i + 1), key)
        elif word not in KEYWORDS and word not in names and before != ".":
            raise ConfigError(key, f"'{tok}' is neither a column of the source table nor an allowed keyword")


def _arguments(tokens: list[tuple[str, str]], open_at: int) -> list[list[tuple[str, str]]]:
    """The top-level arguments of the call whose `(` is tokens[open_at], each as its tokens."""
    args: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for kind, tok in tokens[open_at:]:
        if tok in ("(", "["):
            depth += 1
            if depth == 1:
                continue
        elif tok in (")", "]"):
            depth -= 1
            if depth == 0:
                break
        elif tok == "," and depth == 1:
            args.append([])
            continue
        args[-1].append((kind, tok))
    return args


def _check_size(name: str, cap: int, args: list[list[tuple[str, str]]], key: str) -> None:
    """lpad/rpad/format_number build a string as long as their second argument: it must be an integer
    literal up to `cap`, so that no expression makes every row a string of gigabytes."""
    size = args[1] if len(args) > 1 else []
    if len(size) != 1 or size[0][0] != "number" or not size[0][1].isdigit() or int(size[0][1]) > cap:
        given = " ".join(t for _, t in size) or "nothing"
        raise ConfigError(key, f"{name}'s second argument must be a whole number up to {cap} (got {given}): a slice "
                               "value is a short label, and an unbounded string would exhaust the memory")


def validate_slices(df: DataFrame, expressions: tuple[str, ...]) -> None:
    """Lexical check, then Spark's parser and analyzer on the source schema; one atomic value each."""
    for i, text in enumerate(expressions):
        key = f"slices.expressions[{i}]"
        check_expression(text, df.columns, key)
        try:
            dtype = df.select(F.expr(text).alias("s")).schema["s"].dataType
        except (ParseException, AnalysisException) as exc:
            raise ConfigError(key, f"Spark cannot use '{text}' as a column expression: {first_line(exc)}") from None
        if isinstance(dtype, (StructType, ArrayType, MapType)):
            raise ConfigError(key, f"'{text}' yields {dtype.simpleString()}; a slice needs one value per row")


def slice_values(df: DataFrame, expressions: tuple[str, ...], top_n: int) -> dict[str, list[str]]:
    """The `top_n` most frequent non-null values of every expression, in one aggregation."""
    if not expressions:
        return {}
    pairs = F.explode(F.array(*[F.struct(F.lit(e).alias("k"), F.expr(e).cast("string").alias("v"))
                                for e in expressions])).alias("kv")
    counts = df.select(pairs).select("kv.k", "kv.v").where(F.col("v").isNotNull()).groupBy("k", "v").count()
    ranked = counts.withColumn("r", F.row_number().over(Window.partitionBy("k").orderBy(F.desc("count"), "v")))
    out: dict[str, list[str]] = {e: [] for e in expressions}
    for r in ranked.where(F.col("r") <= top_n).orderBy("k", "r").collect():
        out[r["k"]].append(r["v"])
    return out


def with_slices(df: DataFrame, slices: dict[str, list[str]]) -> DataFrame:
    """Every row once for the whole table (empty key and value) plus once per slice expression whose
    value is among that expression's kept values."""
    if not any(slices.values()):
        return df.withColumn(SLICE_KEY, F.lit("")).withColumn(SLICE_VALUE, F.lit(""))
    entries = [F.struct(F.lit("").alias("k"), F.lit("").alias("v"))]
    for expr, values in slices.items():
        if values:
            value = F.expr(expr).cast("string")
            entries.append(F.struct(F.lit(expr).alias("k"), F.when(value.isin(values), value).alias("v")))
    return (df.withColumn("_dl_slice", F.explode(F.array(*entries))).where(F.col("_dl_slice.v").isNotNull())
            .withColumn(SLICE_KEY, F.col("_dl_slice.k")).withColumn(SLICE_VALUE, F.col("_dl_slice.v"))
            .drop("_dl_slice"))
