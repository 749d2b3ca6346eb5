"""`herald users import`: streamed, validated, every rejected row named by its line."""

import json

import pytest
from sqlalchemy import text

from tests.conftest import ROOT


def _users(herald):
    with herald.database().connect() as conn:
        return {r.id: r for r in conn.execute(text('SELECT * FROM "user"'))}


def test_import_csv_keeps_extra_columns_and_normalises(herald):
    result = herald("users", "import", str(ROOT / "tests" / "users.csv"))
    assert result.exit_code == 0, result.output
    assert "imported 6 user(s)" in result.stdout
    users = _users(herald)
    assert users["el-1"].country == "GR"  # Eurostat alias
    assert users["de-1"].locale == "de_AT"
    assert json.loads(users["de-1"].attributes) == {"plan": "gold"}
    assert users["gb-1"].name is None


def test_import_reports_each_bad_row_and_keeps_the_good_ones(herald, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "id,email,name,country,locale,timezone\n"
        "ok-1,ok@example.com,Ok,DE,de,Europe/Berlin\n"
        "bad-email,not-an-email,X,DE,,\n"
        "bad-country,x@example.com,X,XX,,\n"
        "bad-zone,y@example.com,X,DE,,Mars/Olympus\n"
        "ok-1,dup@example.com,Dup,DE,,\n"
        '"crlf-1",crlf@example.com,"Eve\r\nBcc: evil@example.com",FR,,\n'
        "bad-locale,z@example.com,X,FR,zz_QQ,\n",
        encoding="utf-8",
    )
    result = herald("users", "import", str(path))
    assert result.exit_code == 1
    assert f"{path}:3: bad email" in result.stderr
    assert f"{path}:4: unknown country 'XX'" in result.stderr
    assert f"{path}:5: unknown time zone 'Mars/Olympus'" in result.stderr
    assert f"{path}:6: duplicate id 'ok-1' (first on line 2)" in result.stderr
    assert "unknown locale 'zz_QQ'" in result.stderr
    assert "imported 2 user(s)" in result.stdout
    users = _users(herald)
    assert set(users) == {"ok-1", "crlf-1"}
    assert users["ok-1"].email == "ok@example.com"  # the first row wins, not the duplicate
    assert users["crlf-1"].name == "Eve Bcc: evil@example.com"


def test_strict_import_rejects_the_whole_file(herald, tmp_path):
    path = tmp_path / "strict.jsonl"
    path.write_text(
        '{"id": "a", "email": "a@example.com", "country": "DE"}\n'
        "{not json}\n"
        '{"id": "b", "email": "b@example.com", "country": "FR"}\n',
        encoding="utf-8",
    )
    result = herald("users", "import", str(path), "--strict")
    assert result.exit_code == 1
    assert f"{path}:2: not valid JSON" in result.stderr
    assert "nothing imported" in result.stderr
    assert _users(herald) == {}


def test_import_upserts_by_id(herald, tmp_path):
    path = tmp_path / "users.jsonl"
    path.write_text('{"id": "a", "email": "a@example.com", "country": "DE"}\n', "utf-8")
    assert herald("users", "import", str(path)).exit_code == 0
    path.write_text('{"id": "a", "email": "new@example.com", "country": "FR"}\n', "utf-8")
    assert herald("users", "import", str(path)).exit_code == 0
    users = _users(herald)
    assert len(users) == 1
    assert (users["a"].email, users["a"].country) == ("new@example.com", "FR")


def test_import_without_required_columns_names_the_header(herald, tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("email,name\nx@example.com,X\n", encoding="utf-8")
    result = herald("users", "import", str(path))
    assert result.exit_code == 1
    assert f"{path}:1: the header lacks id, country" in result.stderr


def test_a_column_that_looks_like_a_field_is_refused_not_kept_as_an_attribute(herald, tmp_path):
    """`Email` would have been an attribute: every address lost, and the import "OK"."""
    path = tmp_path / "users.csv"
    path.write_text("id,Email,name,Time Zone,country\nk1,k1@example.ch,K,,CH\n", "utf-8")
    result = herald("users", "import", str(path))
    assert result.exit_code == 1
    assert f"{path}:1: column 'Email' looks like 'email'; column 'Time Zone' looks like " in (
        result.stderr
    )
    assert _users(herald) == {}


def test_a_jsonl_record_with_a_lookalike_key_or_an_object_for_a_name_is_rejected(herald, tmp_path):
    path = tmp_path / "users.jsonl"
    path.write_text(
        '{"id": "a", "E-Mail": "a@example.com", "country": "DE"}\n'
        '{"id": "b", "name": {"first": "B"}, "country": "DE"}\n'
        '{"id": 3, "email": "c@example.com", "country": "FR"}\n',
        "utf-8",
    )
    result = herald("users", "import", str(path))
    assert f"{path}:1: 'E-Mail' looks like 'email'" in result.output
    assert f'{path}:2: name must be text, not {{"first": "B"}}' in result.output
    assert set(_users(herald)) == {"3"}


def test_jsonl_line_that_is_not_utf8_is_rejected_alone(herald, tmp_path):
    path = tmp_path / "users.jsonl"
    path.write_bytes(
        b'{"id": "a", "email": "a@example.com", "country": "DE"}\n'
        b'{"id": "b", "name": "\xff", "country": "DE"}\r\n'
        b'{"id": "c", "email": "c@example.com", "country": "FR"}\r\n'
    )
    result = herald("users", "import", str(path))
    assert result.exit_code == 1
    assert f"{path}:2: not UTF-8 text" in result.stderr
    assert set(_users(herald)) == {"a", "c"}


def test_on_postgresql_an_import_leaves_the_planner_fresh_statistics(herald):
    """Else, right after a large import, PostgreSQL may read the audience through the
    country index and sort it for every page of the plan (quadratic) until autovacuum
    comes by. SQLite keeps its audience query off that index by itself."""
    if not herald.db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (scripts/check runs this file again on PostgreSQL)")
    assert herald("users", "import", str(ROOT / "tests" / "users.csv")).exit_code == 0
    assert herald("users", "generate", "--count", "50").exit_code == 0
    with herald.database().connect() as conn:
        analyzed = conn.execute(
            text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'user'")
        ).scalar_one()
    assert analyzed >= 2
