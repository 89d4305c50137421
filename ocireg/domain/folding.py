"""Deleting versions: by hand, and by retention (a repository keeps its last N versions).

Deleting a version folds its changes into the next one, as Pulp does: what
it added counts as added by the next version, what it removed as removed by
the next version, and what it added that the next removed vanishes. Every
remaining version keeps exactly the content it had. Version 0 (the empty
start), the latest version and versions a distribution is pinned to stay.
"""

from __future__ import annotations

from ocireg.domain.content import version_exists
from ocireg.domain.errors import InvalidField, VersionPinned, VersionUndeletable
from ocireg.domain.repositories import Repository, existing_repository
from ocireg.interfaces import ITransaction


async def _pinned_to(txn: ITransaction, repository: Repository, number: int) -> list[str]:
    rows = await txn.execute(
        "SELECT base_path FROM distributions WHERE repository_id = ? AND version = ? "
        "ORDER BY base_path",
        (repository.id, number),
    )
    return [r[0] for r in rows]


#: What a version's reason gains when deleted versions fold into it: their
#: own reasons, in order, "N: reason" each (see `_folded_reason`).
_FOLDED = " (with deleted version"

_FOLDED_SEPARATOR = " | "

#: The most folded reasons a reason keeps word for word; older ones shrink to
#: their versions' numbers, so that retention, which folds a version at every
#: push, does not grow one reason without bound.
_FOLDED_SHOWN = 5


def _split_reason(reason: str) -> tuple[str, list[str]]:
    """A reason's own part, and the "N: reason" (or "N-M") entries of what folded into it."""
    at = reason.find(_FOLDED)
    if at < 0 or not reason.endswith(")"):
        return reason, []
    entries = reason[at + len(_FOLDED) : -1].removeprefix("s").strip()
    return reason[:at], entries.split(_FOLDED_SEPARATOR)


def _folded_reason(following: str, number: int, folded: str) -> str:
    """The reason of the version that version `number` (reason `folded`) folds into.

    The versions folded into one are always a run of consecutive numbers (the
    deleted ones since the previous remaining version), oldest first.
    """
    own, later = _split_reason(following)
    folded_own, earlier = _split_reason(folded)
    entries = [*earlier, f"{number}: {folded_own}", *later]
    if len(entries) > _FOLDED_SHOWN:
        hidden = entries[: len(entries) - _FOLDED_SHOWN + 1]
        first = hidden[0].split(":", 1)[0].split("-")[0]
        last = hidden[-1].split(":", 1)[0].split("-")[-1]
        entries = [f"{first}-{last}", *entries[len(hidden) :]]
    plural = "s" if len(entries) > 1 or "-" in entries[0].split(":", 1)[0] else ""
    return f"{own}{_FOLDED}{plural} {_FOLDED_SEPARATOR.join(entries)})"


#: Reasons that name another version of their repository by number.
_NAMING_VERSION = ("rollback to {n}", "from this repository version {n}")

_DELETED_SINCE = " (deleted since)"


def _mark_deleted(reason: str, number: int) -> str:
    """`reason` with each mention of version `number` marked as deleted since."""
    for pattern in _NAMING_VERSION:
        mention = pattern.format(n=number)
        at = 0
        while (at := reason.find(mention, at)) >= 0:
            end = at + len(mention)
            if reason[end : end + 1].isdigit() or reason.startswith(_DELETED_SINCE, end):
                at = end
                continue
            reason = reason[:end] + _DELETED_SINCE + reason[end:]
            at = end + len(_DELETED_SINCE)
    return reason


async def fold(txn: ITransaction, repository: Repository, number: int) -> None:
    """Delete version `number` (neither 0 nor the latest), its changes folded into the next.

    The next version's reason gains the deleted one's; reasons that name
    version `number` say it is deleted since.
    """
    (_, base, reason), (following, _, following_reason) = await txn.execute(
        "SELECT number, base_version, reason FROM repository_versions WHERE repository_id = ? "
        "AND number >= ? ORDER BY number LIMIT 2",
        (repository.id, number),
    )
    # Added here and removed by the next: in no remaining version.
    await txn.execute(
        "DELETE FROM repository_content WHERE repository_id = ? AND version_added = ? "
        "AND version_removed = ?",
        (repository.id, number, following),
    )
    await txn.execute(
        "UPDATE repository_content SET version_added = ? WHERE repository_id = ? "
        "AND version_added = ?",
        (following, repository.id, number),
    )
    await txn.execute(
        "UPDATE repository_content SET version_removed = ? WHERE repository_id = ? "
        "AND version_removed = ?",
        (following, repository.id, number),
    )
    await txn.execute(
        "UPDATE repository_versions SET base_version = ? WHERE repository_id = ? "
        "AND base_version = ?",
        (base, repository.id, number),
    )
    await txn.execute(
        "DELETE FROM repository_versions WHERE repository_id = ? AND number = ?",
        (repository.id, number),
    )
    reasons = {following: _folded_reason(following_reason, number, reason)}
    naming = await txn.execute(
        "SELECT number, reason FROM repository_versions WHERE repository_id = ? "
        f"AND number > ? AND ({' OR '.join(['reason LIKE ?'] * len(_NAMING_VERSION))})",
        (repository.id, number,
         *(f"%{p.format(n=number)}%" for p in _NAMING_VERSION)),
    )
    for other, other_reason in naming:
        reasons[other] = _mark_deleted(reasons.get(other, other_reason), number)
    for other, new_reason in sorted(reasons.items()):
        await txn.execute(
            "UPDATE repository_versions SET reason = ? WHERE repository_id = ? AND number = ?",
            (new_reason, repository.id, other),
        )


async def delete_version(txn: ITransaction, name: str, number: int) -> None:
    """Delete version `number` of `name`; refused for version 0, the latest and pinned ones."""
    repository = await existing_repository(txn, name, lock=True)
    await version_exists(txn, repository, number)
    if number == 0 or number == repository.latest_version:
        raise VersionUndeletable(name, number)
    pinned = await _pinned_to(txn, repository, number)
    if pinned:
        raise VersionPinned(name, number, tuple(pinned))
    await fold(txn, repository, number)


async def set_retention(txn: ITransaction, name: str, keep: int | None) -> None:
    """Keep the last `keep` versions of `name` from now on (None: all), and prune now."""
    if keep is not None and keep < 1:
        raise InvalidField("retain_versions", "retain_versions must be at least 1, or null")
    repository = await existing_repository(txn, name, lock=True)
    await txn.execute(
        "UPDATE repositories SET retain_versions = ? WHERE id = ?", (keep, repository.id)
    )
    await prune_by_name(txn, name)


async def prune_by_name(txn: ITransaction, name: str) -> list[int]:
    """Delete the versions of `name` older than its last `retain_versions`; their numbers.

    Version 0 (the empty start) and versions a distribution is pinned to stay.
    Runs after each new version, in its transaction, with the row lock held.
    """
    rows = await txn.execute(
        "SELECT id, name, latest_version, retain_versions FROM repositories WHERE name = ?",
        (name,),
    )
    return await _prune(txn, rows)


async def prune_by_base_path(txn: ITransaction, base_path: str) -> list[int]:
    """`prune_by_name` for the repository a push to `base_path` wrote to."""
    rows = await txn.execute(
        "SELECT r.id, r.name, r.latest_version, r.retain_versions FROM distributions d "
        "JOIN repositories r ON r.id = d.repository_id WHERE d.base_path = ?",
        (base_path,),
    )
    return await _prune(txn, rows)


async def _prune(txn: ITransaction, rows: list[tuple]) -> list[int]:
    """`prune_by_name` for the repository row in `rows` (id, name, latest_version, keep)."""
    if not rows or rows[0][3] is None:
        return []
    repository, keep = Repository(*rows[0][:3]), rows[0][3]
    numbers = [
        r[0]
        for r in await txn.execute(
            "SELECT number FROM repository_versions WHERE repository_id = ? AND number > 0 "
            "ORDER BY number",
            (repository.id,),
        )
    ]
    pinned = {
        r[0]
        for r in await txn.execute(
            "SELECT version FROM distributions WHERE repository_id = ? AND version IS NOT NULL",
            (repository.id,),
        )
    }
    doomed = [n for n in numbers[: max(len(numbers) - keep, 0)] if n not in pinned]
    for number in doomed:
        await fold(txn, repository, number)
    return doomed


