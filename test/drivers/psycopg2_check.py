"""Drives Warden with psycopg2 (libpq underneath); run by test/drivers.test.ts
with Debian's /usr/bin/python3. Settings come from the environment; the
results are printed as one JSON object for the test to check."""
import json
import os

import psycopg2
import psycopg2.errors

out = {}


def connect(user, token_variable):
    return psycopg2.connect(
        os.environ["WARDEN_DSN"],
        user=user,
        password=os.environ[token_variable],
        sslmode="disable",
        application_name="warden-psycopg2-check",
    )


conn = connect("demo", "WARDEN_TOKEN_READ")
conn.autocommit = True
with conn.cursor() as cur:
    got = []
    for i in range(1, 11):
        cur.execute("SELECT name, %s::int * 2 FROM items WHERE id = %s", (i, i))
        got.extend(f"{name}:{twice}" for name, twice in cur.fetchall())
    out["param"] = ",".join(got)

    cur.execute("SELECT id, name FROM items ORDER BY id")
    rows = cur.fetchall()
    out["rows"] = [len(rows), sum(r[0] for r in rows), rows[-1][1]]

    try:
        cur.execute("DELETE FROM items WHERE id = 1")
        out["delete"] = "allowed"
    except psycopg2.Error as e:
        out["delete_sqlstate"] = e.pgcode
        out["delete_message"] = e.diag.message_primary

    cur.execute("SELECT count(*) FROM items WHERE id > %s", (0,))
    out["after_error"] = cur.fetchone()[0]

# A server-side cursor (DECLARE, then FETCH 6 at a time) inside a transaction.
conn.autocommit = False
with conn.cursor(name="items_cursor") as named:
    named.itersize = 6
    named.execute("SELECT id FROM items ORDER BY id")
    out["cursor_rows"] = sum(1 for _ in named)
conn.commit()
conn.close()

admin = connect("demo-admin", "WARDEN_TOKEN_ADMIN")
with admin.cursor() as cur:
    cur.execute("INSERT INTO notes (note) VALUES (%s)", ("psycopg2 rolled back",))
    admin.rollback()
    cur.execute("INSERT INTO notes (note) VALUES (%s)", ("psycopg2 committed",))
    admin.commit()
    # An error aborts the transaction: 25P02 until the rollback.
    cur.execute("INSERT INTO notes (note) VALUES (%s)", ("psycopg2 lost",))
    try:
        cur.execute("SELECT 1 / 0")
    except psycopg2.Error as e:
        out["tx_error"] = e.pgcode
    try:
        cur.execute("SELECT 1")
    except psycopg2.Error as e:
        out["tx_aborted"] = e.pgcode
    admin.rollback()
    cur.execute("SELECT string_agg(note, ',' ORDER BY id) FROM notes WHERE note LIKE 'psycopg2%'")
    out["tx_notes"] = cur.fetchone()[0]
    admin.commit()
admin.close()

print(json.dumps(out))
