"""Encryption at rest for customers' words: tracker events and the project's personal columns.

Off by default. When ``ASSISTANT_ENCRYPTION_KEY`` is set (environment only,
never ``assistant.yml``) it holds one or more Fernet keys separated by commas
(`cryptography`'s Fernet: AES-128-CBC with an HMAC-SHA256, each key 32 random
bytes in URL-safe base64, made by ``python -m core.crypto new-key``). The
first key encrypts; every key in the list decrypts (`MultiFernet`), which is
what makes rotation possible without downtime:

1. put the new key first, keep the old ones after it, restart every process;
2. ``python -m core.crypto rotate`` re-encrypts every stored value with the
   first key (batches, resumable, safe to run again);
3. ``python -m core.crypto status`` shows no value left under an old key;
4. drop the old keys from the variable and restart.

Stored form: a Fernet token (URL-safe base64 text starting ``gAAAAA``).
Values written before encryption was turned on stay readable (legacy
plaintext); ``rotate`` encrypts them too. A token that no configured key
opens is refused with an error naming the variable, never returned as text.

Also here: `EncryptedText` / `EncryptedJSON`, the SQLAlchemy column types of
the personal columns in `core.db`. What encryption costs the tracker store:
``python -m bot.bench_stores``.
"""
from __future__ import annotations

import argparse
import binascii
import functools
import json
import os
import re
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_VARIABLE = "ASSISTANT_ENCRYPTION_KEY"

# A Fernet token: version byte 0x80 then a 64-bit timestamp whose top bytes are 0 for
# millennia, so its base64 starts "gAAAAA"; at least 57 bytes (73 characters).
_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_\-]{67,}={0,2}")


class EncryptionKeyError(RuntimeError):
    """ASSISTANT_ENCRYPTION_KEY is malformed, missing, or does not open what is stored."""


@functools.lru_cache(maxsize=8)
def _fernet_for(raw: str) -> Optional[Tuple[MultiFernet, Fernet]]:
    """(all keys, the first key) of the variable's value; None when it holds no key."""
    keys = [part.strip() for part in raw.split(",") if part.strip()]
    if not keys:
        return None
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode("ascii")))
        except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
            # Never echo the key itself: only where it is and what it should look like.
            raise EncryptionKeyError(
                f"{KEY_VARIABLE}: key {position} of {len(keys)} is not a Fernet key (32 bytes in URL-safe "
                f"base64, 44 characters); make one with `python -m core.crypto new-key`"
            ) from None
    return MultiFernet(fernets), fernets[0]


def _configured() -> Optional[MultiFernet]:
    keys = _fernet_for(os.environ.get(KEY_VARIABLE, ""))
    return keys and keys[0]


def enabled() -> bool:
    """Whether values are encrypted on write (ASSISTANT_ENCRYPTION_KEY set and valid)."""
    return _configured() is not None


def check_key(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Fail at startup, not at the first write: raises `EncryptionKeyError` for a malformed key.

    Reads `environ` (default: this process's environment); returns whether encryption is on.
    """
    if environ is None:
        return enabled()
    return _fernet_for(environ.get(KEY_VARIABLE, "")) is not None


def new_key() -> str:
    """A fresh random Fernet key (URL-safe base64 text)."""
    return Fernet.generate_key().decode("ascii")


def is_encrypted(value: Any) -> bool:
    """Whether a stored value is a Fernet token (rather than legacy plaintext)."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def encrypt_text(text: Optional[str]) -> Optional[str]:
    """`text` encrypted with the first key; unchanged when encryption is off (or for None)."""
    fernet = _configured()
    if fernet is None or text is None:
        return text
    return fernet.encrypt(text.encode("utf-8")).decode("ascii")


def decrypt_text(stored: Optional[str]) -> Optional[str]:
    """The plaintext of a stored value: a token is decrypted, legacy plaintext passes through.

    Raises `EncryptionKeyError` for a token no configured key opens (or with no key set).
    """
    if not is_encrypted(stored):
        return stored
    fernet = _configured()
    if fernet is None:
        raise EncryptionKeyError(
            f"the database holds encrypted values but {KEY_VARIABLE} is not set: set it to the key(s) "
            f"they were written with"
        )
    try:
        return fernet.decrypt(stored.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise EncryptionKeyError(
            f"a stored value was encrypted with a key that {KEY_VARIABLE} does not hold: add that key "
            f"(after the current one) and run `python -m core.crypto rotate` before dropping it"
        ) from None


def under_first_key(stored: Any) -> bool:
    """Whether a stored value is already a token of the first key (what `rotate` leaves alone)."""
    keys = _fernet_for(os.environ.get(KEY_VARIABLE, ""))
    if keys is None or not is_encrypted(stored):
        return False
    try:
        keys[1].decrypt(stored.encode("ascii"))
        return True
    except InvalidToken:
        return False


# ------------------------------------------------------------------ column types

class EncryptedText(sa.types.TypeDecorator):
    """A text column encrypted at rest when the key is set; legacy plaintext reads as it is.

    Fernet is randomised: a WHERE on this column never matches; compare in Python.
    """

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return encrypt_text(value)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return decrypt_text(value)


class EncryptedJSON(sa.types.TypeDecorator):
    """A JSON column encrypted at rest when the key is set: the stored JSON is the token string.

    The column stays JSON in the database (valid JSON either way), so no
    migration is needed and legacy rows (a JSON object) read unchanged.
    """

    impl = sa.JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None or not enabled():
            return value
        return encrypt_text(json.dumps(value))

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if is_encrypted(value):
            return json.loads(decrypt_text(value))
        return value


def encrypted_columns(metadata: sa.MetaData) -> Dict[str, List[str]]:
    """Table name -> names of its `EncryptedText`/`EncryptedJSON` columns."""
    found: Dict[str, List[str]] = {}
    for table in metadata.sorted_tables:
        names = [c.name for c in table.columns if isinstance(c.type, (EncryptedText, EncryptedJSON))]
        if names:
            found[table.name] = names
    return found


# ------------------------------------------------------------------ rotation

TRACKER_TABLE = "events"  # Rasa's SQL tracker store; its `data` column is encrypted by bot.stores


def _raw_table(table: sa.Table, columns: Iterable[str]) -> Tuple[sa.sql.TableClause, List[sa.Column]]:
    """A lightweight twin of `table` whose encrypted columns read and write the stored form."""
    key = list(table.primary_key.columns)
    if len(key) != 1:
        raise ValueError(f"table {table.name} needs a one-column primary key to be rotated in batches")
    raw_cols = [sa.column(key[0].name, key[0].type)]
    for name in columns:
        column_type = table.c[name].type
        raw_cols.append(sa.column(name, column_type.impl if isinstance(column_type, sa.types.TypeDecorator) else column_type))
    return sa.table(table.name, *raw_cols), raw_cols


def _tracker_twin() -> sa.Table:
    return sa.Table(TRACKER_TABLE, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("data", sa.Text))


def _plain_of(stored: Any, column_type: Any) -> Any:
    """The plaintext form of a stored value, as the raw column type takes it back."""
    if isinstance(column_type, sa.JSON):
        return json.loads(decrypt_text(stored)) if is_encrypted(stored) else stored
    return decrypt_text(stored)


def _reencrypted(stored: Any, column_type: Any) -> Any:
    plain = _plain_of(stored, column_type)
    if isinstance(column_type, sa.JSON):
        return encrypt_text(json.dumps(plain))
    return encrypt_text(plain)


def _one_writer_per_batch(engine: sa.engine.Engine) -> sa.engine.Engine:
    """For SQLite, an engine whose transactions start with BEGIN IMMEDIATE.

    pysqlite begins a transaction only at the first write, so a row changed
    between the batch's read and its write would get its old value back; an
    immediate transaction holds the write lock from the read on. (PostgreSQL:
    the batch's rows are read FOR UPDATE instead.)
    """
    if engine.dialect.name != "sqlite":
        return engine
    serial = sa.create_engine(engine.url, future=True, poolclass=sa.pool.NullPool, connect_args={"timeout": 30})

    @sa.event.listens_for(serial, "connect")
    def _manual(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # SQLAlchemy's begin below, not pysqlite's

    @sa.event.listens_for(serial, "begin")
    def _immediate(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return serial


def rotate_table(engine: sa.engine.Engine, table: sa.Table, columns: List[str], batch: int = 500,
                 log=print) -> Dict[str, int]:
    """Re-encrypt `columns` of `table` with the first key, `batch` rows a transaction.

    Rows already under the first key are left alone, so a run that stopped
    halfway continues where it was when started again. Plaintext rows are
    encrypted. Returns counts: rows seen, values rewritten.
    """
    if not enabled():
        raise EncryptionKeyError(f"{KEY_VARIABLE} is not set: nothing to rotate to")
    raw, raw_cols = _raw_table(table, columns)
    key, values = raw_cols[0], raw_cols[1:]
    engine = _one_writer_per_batch(engine)
    seen = rewritten = 0
    last = None
    while True:
        with engine.begin() as conn:
            query = sa.select(*raw_cols).order_by(key).limit(batch)
            if last is not None:
                query = query.where(key > last)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # a row changed meanwhile is not overwritten with its old value
            rows = conn.execute(query).all()
            for row in rows:
                seen += 1
                changes = {}
                for column, stored in zip(values, row[1:]):
                    if stored is None or under_first_key(stored):
                        continue
                    changes[column.name] = _reencrypted(stored, column.type)
                if changes:
                    conn.execute(raw.update().where(key == row[0]).values(**changes))
                    rewritten += len(changes)
        if not rows:
            break
        last = rows[-1][0]
        log(f"  {table.name}: {seen} rows seen, {rewritten} values re-encrypted")
    return {"rows": seen, "rewritten": rewritten}


def count_table(engine: sa.engine.Engine, table: sa.Table, columns: List[str], batch: int = 2000) -> Dict[str, int]:
    """How many values of `columns` are plaintext, under the first key, or under an older key."""
    raw, raw_cols = _raw_table(table, columns)
    counts = {"plaintext": 0, "first_key": 0, "older_key": 0}
    last = None
    with engine.connect() as conn:
        while True:
            query = sa.select(*raw_cols).order_by(raw_cols[0]).limit(batch)
            if last is not None:
                query = query.where(raw_cols[0] > last)
            rows = conn.execute(query).all()
            if not rows:
                break
            last = rows[-1][0]
            for row in rows:
                for stored in row[1:]:
                    if stored is None:
                        continue
                    if not is_encrypted(stored):
                        counts["plaintext"] += 1
                    elif under_first_key(stored):
                        counts["first_key"] += 1
                    else:
                        counts["older_key"] += 1
    return counts


def _targets(database_url: Optional[str], tracker_url: Optional[str]):
    """(engine, table, columns) for every encrypted column of the project database and the tracker store."""
    from core import db
    from core.settings import get_settings

    settings = get_settings()
    project = db.connect(database_url or settings.database_url)
    for name, columns in encrypted_columns(db.metadata).items():
        yield project, db.metadata.tables[name], columns
    url = tracker_url or settings.tracker_url or f"sqlite:///{settings.tracker_db}"
    tracker = sa.create_engine(url, future=True)
    if sa.inspect(tracker).has_table(TRACKER_TABLE):
        yield tracker, _tracker_twin(), ["data"]


# ------------------------------------------------------------------ command line

def main(argv: Optional[List[str]] = None) -> int:
    """``python -m core.crypto new-key | check | status | rotate``."""
    parser = argparse.ArgumentParser(prog="python -m core.crypto", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("new-key", help="print a fresh Fernet key")
    commands.add_parser("check", help=f"check {KEY_VARIABLE} and say whether encryption is on")
    for name, text in (("status", "count values that are plaintext, under the first key, or under older keys"),
                       ("rotate", "re-encrypt every encrypted column and tracker row with the first key")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--database-url", help="project database (default: the settings' database_url)")
        sub.add_argument("--tracker-url", help="tracker store (default: the settings' tracker_url or tracker_db)")
        if name == "rotate":
            sub.add_argument("--batch", type=int, default=500, help="rows per transaction (default 500)")
    args = parser.parse_args(argv)
    try:
        if args.command == "new-key":
            print(new_key())
        elif args.command == "check":
            print(f"encryption at rest is {'on' if check_key() else 'off'}")
        else:
            check_key()
            total = {"plaintext": 0, "older_key": 0}
            for engine, table, columns in _targets(args.database_url, args.tracker_url):
                if args.command == "rotate":
                    done = rotate_table(engine, table, columns, batch=args.batch)
                    print(f"{table.name}: {done['rows']} rows, {done['rewritten']} values re-encrypted")
                else:
                    counts = count_table(engine, table, columns)
                    total["plaintext"] += counts["plaintext"]
                    total["older_key"] += counts["older_key"]
                    print(f"{table.name} ({', '.join(columns)}): {counts['first_key']} under the first key, "
                          f"{counts['older_key']} under older keys, {counts['plaintext']} plaintext")
            if args.command == "status":
                done = total["older_key"] == 0 and (total["plaintext"] == 0 or not enabled())
                print("nothing left to rotate" if done else "run `python -m core.crypto rotate`")
    except EncryptionKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
