"""The management API's operations over the stores, as the HTTP layer calls them.

Each method validates its input (naming the offending field in a 400), runs
the domain functions of `repositories`, `history`, `rewrite`, `folding`,
`staging` and `distributions` in one transaction of the metadata store, and
returns their values. Every operation that makes a version also prunes the repository to
its `retain_versions`, in the same transaction. Nothing here knows of HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from twisted.internet.interfaces import IReactorTime

from ocireg.digest import Digest
from ocireg.domain import distributions, folding, history, repositories, rewrite, staging
from ocireg.domain.errors import InvalidField
from ocireg.errors import RegistryError
from ocireg.interfaces import IBlobStore, IMetadataStore
from ocireg.names import validate_name, validate_tag

#: Content kinds as the API names them, and as the store does.
CONTENT_KINDS = {"tags": "tag", "manifests": "manifest", "blobs": "blob"}

#: The most items one page lists.
MAX_PAGE = 1000


def _with_field(error: RegistryError, field: str) -> RegistryError:
    detail = error.detail if isinstance(error.detail, dict) else {}
    error.detail = {"field": field, **detail}
    return error


def check_name(name: str, field: str = "name") -> str:
    try:
        return validate_name(name)
    except RegistryError as e:
        raise _with_field(e, field) from None


def check_tag(tag: str, field: str) -> str:
    try:
        return validate_tag(tag)
    except RegistryError as e:
        raise _with_field(e, field) from None


def check_digest(digest: str, field: str) -> str:
    try:
        return str(Digest.parse(digest))
    except RegistryError as e:
        raise _with_field(e, field) from None


def check_version(number: int, field: str = "version") -> int:
    if number < 0:
        raise InvalidField(field, f"{field} must be a version number, 0 or more")
    return number


def check_limit(limit: int | None, field: str = "limit") -> int:
    if limit is None:
        return 100
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidField(field, f"{field} must be between 1 and {MAX_PAGE}")
    return limit


@attrs.define
class ManagementOperations:
    """Repositories, their versions and staging, and distributions."""

    metadata: IMetadataStore
    blobs: IBlobStore
    clock: IReactorTime

    def _now(self) -> float:
        return self.clock.seconds()

    # Repositories

    async def list_repositories(
        self, prefix: str | None, limit: int | None, after: str | None
    ) -> list[repositories.RepositoryInfo]:
        # One more than the page, to know whether another page follows.
        limit = check_limit(limit) + 1

        async def listing(txn):
            found = await repositories.names(txn, prefix, limit, after)
            return [await repositories.describe(txn, name) for name in found]

        return await self.metadata.transact(listing)

    async def create_repository(
        self, name: str, retain_versions: int | None, distribute: bool
    ) -> repositories.RepositoryInfo:
        check_name(name)
        if retain_versions is not None and retain_versions < 1:
            raise InvalidField("retain_versions", "retain_versions must be at least 1, or null")
        now = self._now()

        async def create(txn):
            await repositories.create(txn, name, retain_versions, now, distribute)
            return await repositories.describe(txn, name)

        return await self.metadata.transact(create)

    async def show_repository(self, name: str) -> repositories.RepositoryInfo:
        check_name(name)
        return await self.metadata.transact(lambda txn: repositories.describe(txn, name))

    async def set_retention(
        self, name: str, retain_versions: int | None
    ) -> repositories.RepositoryInfo:
        check_name(name)

        async def update(txn):
            await folding.set_retention(txn, name, retain_versions)
            return await repositories.describe(txn, name)

        return await self.metadata.transact(update)

    async def delete_repository(self, name: str) -> None:
        check_name(name)
        await self.metadata.transact(lambda txn: repositories.delete(txn, name))

    # Versions

    async def list_versions(self, name: str) -> list[history.VersionSummary]:
        check_name(name)
        return await self.metadata.transact(lambda txn: history.summaries(txn, name))

    async def show_version(self, name: str, number: int) -> history.VersionSummary:
        check_name(name)
        check_version(number)
        return await self.metadata.transact(lambda txn: history.summary(txn, name, number))

    async def version_content(
        self, name: str, number: int, kind: str, limit: int | None, after: str | None
    ) -> list[tuple[str, str]]:
        check_name(name)
        check_version(number)
        if kind not in CONTENT_KINDS:
            raise InvalidField("kind", f"content kind must be one of {', '.join(CONTENT_KINDS)}")
        # One more than the page, to know whether another page follows.
        limit = check_limit(limit) + 1
        return await self.metadata.transact(
            lambda txn: history.content_page(txn, name, number, CONTENT_KINDS[kind], limit, after)
        )

    async def diff(self, name: str, base: int, target: int) -> history.Diff:
        check_name(name)
        check_version(base, "base")
        check_version(target, "target")
        return await self.metadata.transact(lambda txn: history.diff(txn, name, base, target))

    async def rollback(self, name: str, number: int) -> rewrite.Change:
        check_name(name)
        check_version(number)
        now = self._now()

        async def rollback(txn):
            change = await rewrite.rollback(txn, self.blobs, name, number, now)
            await folding.prune_by_name(txn, name)
            return change

        return await self.metadata.transact(rollback)

    async def modify(
        self,
        name: str,
        add_tags: Mapping[str, str],
        remove_tags: list[str],
        add_manifests: list[str],
        remove_manifests: list[str],
        source_repository: str | None,
        source_version: int | None,
    ) -> rewrite.Change:
        check_name(name)
        for tag, reference in add_tags.items():
            check_tag(tag, f"add_tags.{tag}")
            if ":" in reference:
                check_digest(reference, f"add_tags.{tag}")
            else:
                check_tag(reference, f"add_tags.{tag}")
        for i, tag in enumerate(remove_tags):
            check_tag(tag, f"remove_tags[{i}]")
        added = [check_digest(d, f"add_manifests[{i}]") for i, d in enumerate(add_manifests)]
        removed = [
            check_digest(d, f"remove_manifests[{i}]") for i, d in enumerate(remove_manifests)
        ]
        if source_repository is not None:
            check_name(source_repository, "source.repository")
        if source_version is not None:
            check_version(source_version, "source.version")
        change = rewrite.Modification(
            dict(add_tags), tuple(remove_tags), tuple(added), tuple(removed),
            source_repository, source_version,
        )
        if change.is_empty():
            raise InvalidField(
                "add_tags",
                "nothing to change: give add_tags, remove_tags, add_manifests or remove_manifests",
            )
        now = self._now()

        async def modify(txn):
            result = await rewrite.modify(txn, self.blobs, name, change, now)
            await folding.prune_by_name(txn, name)
            return result

        return await self.metadata.transact(modify)

    async def delete_version(self, name: str, number: int) -> None:
        check_name(name)
        check_version(number)
        await self.metadata.transact(lambda txn: folding.delete_version(txn, name, number))

    # Staging

    async def staging(self, name: str) -> staging.Staging:
        check_name(name)
        return await self.metadata.transact(lambda txn: staging.show(txn, name))

    async def discard_staging(self, name: str) -> int:
        check_name(name)
        return await self.metadata.transact(lambda txn: staging.discard(txn, name))

    # Distributions

    async def list_distributions(
        self, repository: str | None, limit: int | None, after: str | None
    ) -> list[distributions.Distribution]:
        if repository is not None:
            check_name(repository, "repository")
        # One more than the page, to know whether another page follows.
        limit = check_limit(limit) + 1
        return await self.metadata.transact(
            lambda txn: distributions.listing(txn, repository, limit, after)
        )

    async def create_distribution(
        self, base_path: str, repository: str, version: int | None
    ) -> distributions.Distribution:
        check_name(base_path, "base_path")
        check_name(repository, "repository")
        if version is not None:
            check_version(version)
        now = self._now()
        return await self.metadata.transact(
            lambda txn: distributions.create(txn, base_path, repository, version, now)
        )

    async def show_distribution(self, base_path: str) -> distributions.Distribution:
        check_name(base_path, "base_path")
        return await self.metadata.transact(lambda txn: distributions.find(txn, base_path))

    async def update_distribution(
        self, base_path: str, repository: str | None, version: int | None, pin: bool
    ) -> distributions.Distribution:
        """Point `base_path` at `repository` (if given); with `pin`, at `version` (None: latest)."""
        check_name(base_path, "base_path")
        if repository is not None:
            check_name(repository, "repository")
        if version is not None:
            check_version(version)
        return await self.metadata.transact(
            lambda txn: distributions.update(txn, base_path, repository, version, pin)
        )

    async def delete_distribution(self, base_path: str) -> None:
        check_name(base_path, "base_path")
        await self.metadata.transact(lambda txn: distributions.delete(txn, base_path))
