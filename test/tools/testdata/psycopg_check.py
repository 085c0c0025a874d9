"""Reads the tools suite's source schema with psycopg 3 and prints what it
received as JSON, so that a run through pgwarden can be compared with a
direct one. Usage: psycopg_check.py DSN"""

import hashlib
import json
import sys

import psycopg


def digest(rows):
    return hashlib.md5(repr(rows).encode()).hexdigest()


def main(dsn):
    out = {}
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT id, name, email, signed_up FROM public.customers WHERE id <= %s ORDER BY id", (25,))
            out["text"] = [[repr(v) for v in row] for row in cur.fetchall()]
            cur.execute("SELECT count(*) FROM public.customers")
            out["count"] = cur.fetchone()[0]

        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT sku, title, price, tags, attrs FROM app.products WHERE price > %s ORDER BY sku", (100,))
            rows = cur.fetchall()
            out["binary"] = {"rows": len(rows), "first": [repr(v) for v in rows[0]], "digest": digest(rows)}
            cur.execute("SELECT id, customer_id, quantity, placed_at, note FROM app.orders ORDER BY id LIMIT 500")
            out["binary_orders"] = digest(cur.fetchall())

        # Prepared on the server after prepare_threshold executions.
        with conn.cursor() as cur:
            got = []
            for i in range(1, 9):
                cur.execute("SELECT email FROM public.customers WHERE id = %s", (i * 100,), prepare=True)
                got.append(cur.fetchone()[0])
            out["prepared"] = got

        # A server-side cursor, fetched in pieces, in a transaction.
        with conn.transaction():
            with conn.cursor(name="orders_cursor") as cur:
                cur.execute("SELECT o.id, o.quantity, c.email FROM app.orders o JOIN public.customers c ON c.id = o.customer_id ORDER BY o.id")
                pieces, rows = [], []
                while True:
                    chunk = cur.fetchmany(700)
                    if not chunk:
                        break
                    pieces.append(len(chunk))
                    rows.extend(chunk)
                out["named_cursor"] = {"pieces": pieces, "digest": digest(rows)}

        with conn.cursor() as cur:
            data = bytearray()
            with cur.copy("COPY (SELECT * FROM public.customers ORDER BY id) TO STDOUT") as copy:
                for block in copy:
                    data += block
            out["copy_out"] = {"bytes": len(data), "md5": hashlib.md5(data).hexdigest()}

            binary = bytearray()
            with cur.copy("COPY (SELECT sku, price, tags FROM app.products ORDER BY sku) TO STDOUT (FORMAT binary)") as copy:
                for block in copy:
                    binary += block
            out["copy_out_binary"] = {"bytes": len(binary), "md5": hashlib.md5(binary).hexdigest()}

            cur.execute("CREATE TEMP TABLE psycopg_in (LIKE public.customers)")
            with cur.copy("COPY psycopg_in FROM STDIN") as copy:
                copy.write(data)
            with cur.copy("COPY psycopg_in (id, name, email, signed_up) FROM STDIN") as copy:
                copy.write_row((100001, "Row Writer", "row.writer@example.com", "2024-02-29"))
            cur.execute("SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t.id)) FROM psycopg_in t")
            out["copy_in"] = list(cur.fetchone())
            cur.execute("SELECT md5(string_agg(t::text, ',' ORDER BY t.id)) FROM public.customers t")
            out["copy_in_source"] = cur.fetchone()[0]
            cur.execute("DELETE FROM psycopg_in WHERE id = 100001")
            cur.execute("SELECT md5(string_agg(t::text, ',' ORDER BY t.id)) FROM psycopg_in t")
            out["copy_in_roundtrip"] = cur.fetchone()[0]
        conn.rollback()

        # Pipeline mode: statements sent without waiting for each result.
        with conn.pipeline():
            cur = conn.cursor()
            cur.execute("CREATE TEMP TABLE psycopg_pipe (id int, email text)")
            cur.executemany("INSERT INTO psycopg_pipe VALUES (%s, %s)", [(i, f"p{i}@example.com") for i in range(1, 101)])
            count = conn.cursor()
            count.execute("SELECT count(*), sum(id) FROM psycopg_pipe WHERE email LIKE %s", ("p%@example.com",))
            one = conn.execute("SELECT email FROM public.customers WHERE id = %s", (77,))
        out["pipeline"] = [list(count.fetchone()), one.fetchone()[0]]
        conn.rollback()

        conn.autocommit = True
        notes = []
        conn.add_notify_handler(lambda n: notes.append([n.channel, n.payload]))
        conn.execute("LISTEN psycopg_channel")
        conn.execute("NOTIFY psycopg_channel, 'ping'")
        conn.execute("SELECT 1")
        out["notify"] = notes
    json.dump(out, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1])
