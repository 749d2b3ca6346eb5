"""The lookups by id of a send are a few statements, whatever the batch sizes: the driver
keeps every distinct statement prepared (sqlite3: the last 128 per connection, ~225 bytes a
placeholder), so a statement per list length grew `herald send` by ~14 MB at 100k users."""

from typing import Any

from sqlalchemy import event

from engine.delivery.synthetic import generate_users
from engine.store import deliveries, open_database, writing
from engine.store.events import subjects
from engine.store.users import insert_users


def test_lookups_of_any_number_of_ids_use_a_dozen_statements_and_find_each_id_once(
    database_url,
):
    engine = open_database(database_url)
    users = list(generate_users(1500, seed=5))
    insert_users(engine, users)
    ids = sorted(str(u["id"]) for u in users)
    assert len(ids) == 1500
    statements: set[str] = set()

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "IN (" in statement:
            statements.add(statement)

    event.listen(engine, "before_cursor_execute", seen)
    for count in range(1, 1500, 7):  # as claims and recorded batches come: any length
        wanted = ids[count // 3 : count // 3 + count]
        assert sorted(deliveries.users_by_id(engine, wanted)) == wanted
        with writing(engine) as conn:
            made = subjects(conn, wanted)
        assert sorted(made) == wanted
        assert len(set(made.values())) == len(wanted)
    event.remove(engine, "before_cursor_execute", seen)
    # powers of two up to 1,024: 11 lengths of each lookup
    assert len(statements) <= 22, f"{len(statements)} distinct statements"
    engine.dispose()
