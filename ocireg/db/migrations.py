"""Numbered schema migrations, applied in order at start-up.

Each backend has a folder of `NNNN_name.sql` files under `schema/`. The
highest number applied is kept in `schema_version`; a database whose number
is higher than any file this ocireg knows is refused.
"""

from __future__ import annotations

import importlib.resources
import re

import attrs

from ocireg.interfaces import ITransaction

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class SchemaTooNew(Exception):
    """The database was migrated by a newer ocireg than this one."""


@attrs.frozen
class Migration:
    number: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file's statements, split on `;` at the end of a line."""
        text = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [s.strip() for s in re.split(r";\s*$", text, flags=re.M) if s.strip()]


def migrations(backend: str) -> list[Migration]:
    """The migrations of `backend` ('sqlite' or 'postgresql'), in order."""
    folder = importlib.resources.files("ocireg.db") / "schema" / backend
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{backend} migrations are not numbered 1..n: {numbers}")
    return found


def pending(backend: str, applied: int) -> list[Migration]:
    """The migrations still to apply to a database at version `applied`."""
    known = migrations(backend)
    if applied > len(known):
        raise SchemaTooNew(
            f"the database's schema is version {applied}, but this ocireg knows only "
            f"up to {len(known)}: upgrade ocireg, or point it at another database"
        )
    return known[applied:]


async def migrate(txn: ITransaction, backend: str) -> None:
    """Bring the database of `txn` up to the newest schema of `backend`, in that transaction.

    Idempotent: a database already at the newest version is left as it is.
    Raises SchemaTooNew for a database migrated by a newer ocireg.
    """
    await txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    rows = await txn.execute("SELECT version FROM schema_version")
    applied = rows[0][0] if rows else 0
    if not rows:
        await txn.execute("INSERT INTO schema_version (version) VALUES (0)")
    for migration in pending(backend, applied):
        for statement in migration.statements():
            await txn.execute(statement)
        await txn.execute("UPDATE schema_version SET version = ?", (migration.number,))
