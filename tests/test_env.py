"""notifyproject.env: DATABASE_URL and boolean variables mean what they say, every combination."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db.utils import ConnectionHandler

from notifyproject.env import POOL_SIZE, env_bool, env_list, parse_database_url

BASE = Path("/srv/site")
PG = "postgres://app:p%40ss%2Fw@db.example:6543/notify"


def parse(url: str) -> dict:
    return parse_database_url(url, base_dir=BASE)


def test_a_postgres_url_gives_every_part_decoded_and_the_pool_by_default():
    database = parse(PG)
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == ("notify", "app", "p@ss/w")
    assert (database["HOST"], database["PORT"]) == ("db.example", "6543")
    assert database["OPTIONS"] == {"pool": {"min_size": 1, "max_size": POOL_SIZE}}
    assert database["CONN_MAX_AGE"] == 0
    assert database["CONN_HEALTH_CHECKS"] is False  # the pool hands out only healthy ones


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "pgsql", "POSTGRES"])
def test_every_postgres_scheme_spelling(scheme):
    assert parse(f"{scheme}://u@h/d")["ENGINE"] == "django.db.backends.postgresql"


# (query, pool expected, max_size when pooled, other options left for libpq)
COMBINATIONS = [
    ("", True, POOL_SIZE, {}),
    ("pool=1", True, POOL_SIZE, {}),
    ("pool=true", True, POOL_SIZE, {}),
    ("pool=on", True, POOL_SIZE, {}),
    ("pool=YES", True, POOL_SIZE, {}),
    ("pool_size=5", True, 5, {}),
    ("pool=1&pool_size=5", True, 5, {}),
    ("pool_size=5&pool=1", True, 5, {}),
    ("pool=0", False, None, {}),
    ("pool=false", False, None, {}),
    ("pool=off", False, None, {}),
    ("pool=no", False, None, {}),
    ("pool=0&pool_size=5", False, None, {}),
    ("pool_size=5&pool=0", False, None, {}),
    ("sslmode=require&pool=0&pool_size=3", False, None, {"sslmode": "require"}),
    (
        "sslmode=require&pool_size=3&connect_timeout=5",
        True,
        3,
        {"sslmode": "require", "connect_timeout": "5"},
    ),
]


@pytest.mark.parametrize(("query", "pooled", "size", "others"), COMBINATIONS)
def test_pool_and_pool_size_in_any_combination(query, pooled, size, others):
    database = parse(f"{PG}?{query}" if query else PG)
    options = dict(database["OPTIONS"])
    # Ours never reach libpq, which refuses a connection option it does not know.
    assert "pool_size" not in options
    pool = options.pop("pool", None)
    assert options == others
    if pooled:
        assert pool == {"min_size": 1, "max_size": size}
        assert database["CONN_HEALTH_CHECKS"] is False
    else:
        assert pool is None
        assert database["CONN_HEALTH_CHECKS"] is True


@pytest.mark.parametrize(
    "query",
    ["pool=maybe", "pool=2", "pool_size=0", "pool_size=-3", "pool_size=ten", "pool_size=1.5"],
)
def test_a_pool_setting_that_means_nothing_is_refused(query):
    with pytest.raises(ValueError, match="DATABASE_URL"):
        parse(f"{PG}?{query}")


@pytest.mark.parametrize("query", ["pool=0&pool_size=3", "pool=1&pool_size=3", ""])
def test_the_parsed_settings_connect_to_a_real_postgresql(query, django_db_blocker):
    """What libpq and Django make of the parsed entry, not only its shape."""
    psycopg = pytest.importorskip("psycopg")
    url = f"postgres://postgres@127.0.0.1:5432/postgres?{query}"
    try:
        psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=2
        ).close()
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    # An alias of its own: Django keeps pools per alias, and "default" is the suite's.
    handler = ConnectionHandler(
        {"default": {"ENGINE": "django.db.backends.dummy"}, "envtest": parse(url)}
    )
    wrapper = handler["envtest"]
    try:
        with django_db_blocker.unblock(), wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
        assert (wrapper.pool is not None) == ("pool=0" not in query)
    finally:
        wrapper.close()
        wrapper.close_pool()


def test_sqlite_paths_relative_to_the_project_or_absolute():
    assert str(parse("sqlite:///db.sqlite3")["NAME"]) == str(BASE / "db.sqlite3")
    assert str(parse("sqlite:////var/lib/notify.sqlite3")["NAME"]) == "/var/lib/notify.sqlite3"


def test_an_unsupported_scheme_is_refused():
    with pytest.raises(ValueError, match="not supported"):
        parse("mysql://u@h/d")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("On", True),
        (" yes ", True),
        ("0", False),
        ("false", False),
        ("off", False),
        ("no", False),
        ("", False),
    ],
)
def test_env_bool_reads_what_people_write(monkeypatch, raw, expected):
    monkeypatch.setenv("NOTIFY_TEST_FLAG", raw)
    assert env_bool("NOTIFY_TEST_FLAG", default=not expected) is expected


def test_env_bool_default_and_refusal(monkeypatch):
    monkeypatch.delenv("NOTIFY_TEST_FLAG", raising=False)
    assert env_bool("NOTIFY_TEST_FLAG", default=True) is True
    monkeypatch.setenv("NOTIFY_TEST_FLAG", "maybe")
    with pytest.raises(ValueError, match="not a boolean"):
        env_bool("NOTIFY_TEST_FLAG", default=False)


def test_env_list(monkeypatch):
    monkeypatch.setenv("NOTIFY_TEST_LIST", " a, b ,,c ")
    assert env_list("NOTIFY_TEST_LIST", []) == ["a", "b", "c"]
    monkeypatch.delenv("NOTIFY_TEST_LIST")
    assert env_list("NOTIFY_TEST_LIST", ["d"]) == ["d"]
