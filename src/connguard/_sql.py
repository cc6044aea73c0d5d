"""Is a SQL statement read-only, so that running it twice is harmless?

Deliberately conservative: anything it cannot prove read-only is treated as a
write, and a write whose outcome is unknown is never retried. A statement counts
as read-only when it is a single SELECT, SHOW, EXPLAIN/DESCRIBE of one, VALUES
or TABLE that takes no locks, writes no table (SELECT ... INTO) and calls only
functions known to have no side effects. A user-defined function may write, so
an unknown function name makes the statement a write. Mark anything else that
is safe to repeat with ``connguard.idempotent()``.
"""

from __future__ import annotations

import re

_READ_STATEMENTS = frozenset({"SELECT", "SHOW", "VALUES", "TABLE"})
_EXPLAIN = frozenset({"EXPLAIN", "DESCRIBE", "DESC"})

# Built-in functions without side effects that Django's ORM and everyday SQL use.
# (Side-effecting ones such as nextval, setval, pg_advisory_lock, GET_LOCK,
# RELEASE_LOCK, LAST_INSERT_ID(expr), set_config, pg_notify are absent on purpose.)
_SAFE_FUNCTIONS = frozenset(
    """
    abs acos asin atan atan2 avg bit_and bit_length bit_or bit_xor bool_and bool_or btrim
    cardinality cast cbrt ceil ceiling char char_length character_length chr coalesce concat
    concat_ws convert convert_tz cos cot count cume_dist curdate current_date current_time
    current_timestamp curtime date date_add date_format date_part date_sub date_trunc datediff
    day dayname dayofmonth dayofweek dayofyear degrees dense_rank div every exists exp extract
    field find_in_set first_value floor format from_unixtime greatest group_concat hex hour if
    ifnull in initcap insert instr interval isnull json_agg json_array json_arrayagg
    json_build_array json_build_object json_contains json_extract json_length json_object
    json_objectagg json_unquote json_valid jsonb_agg jsonb_build_array jsonb_build_object
    jsonb_extract_path jsonb_path_query lag last_value lcase lead least left length ln localtime
    localtimestamp locate log log10 log2 lower lpad ltrim make_date make_interval max md5
    microsecond min minute mod month monthname now nth_value ntile nullif octet_length
    percent_rank pi position pow power quarter radians rand random rank regexp_instr
    regexp_like regexp_replace regexp_substr repeat replace reverse right round row row_number
    pg_sleep rpad rtrim second sha1 sha2 sign sin sleep sqrt st_asbinary st_astext
    st_geomfromtext st_x st_y
    std stddev stddev_pop stddev_samp str_to_date strftime string_agg strpos substr substring
    substring_index sum tan time time_to_sec timestamp timestampdiff to_char to_date
    to_timestamp trim trunc truncate ucase unnest upper uuid var_pop var_samp variance version
    week weekday weekofyear year yearweek
    """.split()
)

# SQL keywords that may be followed by "(" without being a function call.
_KEYWORDS = frozenset(
    """
    all and any as asc between by case cross desc distinct else end exists filter from full
    group having in inner into is join lateral left like limit not null offset on or order
    outer over partition range right rows select some then union using values when where
    window with
    """.split()
)

_STRING = re.compile(r"'(?:[^'\\]|\\.|'')*'|\$\$.*?\$\$", re.DOTALL)
_QUOTED_NAME = re.compile(r'"(?:[^"]|"")*"|`(?:[^`]|``)*`')
_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*|#[^\n]*", re.DOTALL)
_CALL = re.compile(r"([A-Za-z_][A-Za-z_0-9$]*)\s*\(")
_LOCKING = re.compile(
    r"\bFOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE|KEY\s+SHARE)\b|\bLOCK\s+IN\s+SHARE\s+MODE\b|\bINTO\b",
    re.IGNORECASE,
)
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_EXPLAIN_OPTIONS = re.compile(
    r"\A\s*(?:\([^)]*\)|ANALYZE|ANALYSE|VERBOSE|EXTENDED|PARTITIONS|FORMAT\s*=\s*\w+|\s)*",
    re.IGNORECASE,
)


def _normalise(sql: str) -> str:
    # Strings become '', quoted names become a plain name (so "f"(x) still
    # reads as a call), comments disappear.
    sql = _STRING.sub("''", sql)
    sql = _QUOTED_NAME.sub("q", sql)
    return _COMMENT.sub(" ", sql)


def _read_only(sql: str) -> bool:
    body = sql.strip().lstrip("(").strip()
    match = _FIRST_WORD.match(body)
    if not match:
        return False
    first = match.group(0).upper()
    if first in _EXPLAIN:
        return _read_only(_EXPLAIN_OPTIONS.sub("", body[match.end() :], count=1))
    if first not in _READ_STATEMENTS:
        return False
    if ";" in body.rstrip().rstrip(";"):
        return False  # more than one statement
    if _LOCKING.search(body):
        return False
    for call in _CALL.finditer(body):
        name = call.group(1).lower()
        if name not in _SAFE_FUNCTIONS and name not in _KEYWORDS:
            return False
    return True


def is_read_only(sql: str) -> bool:
    """True only if repeating ``sql`` can have no effect beyond returning rows."""
    return _read_only(_normalise(sql))
