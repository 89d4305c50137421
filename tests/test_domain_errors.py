"""The domain's typed errors: what they say, that they stay as raised, and their wire form.

The message and detail each error gives are the ones clients have read from
the registry since before the errors were typed; the headers an upload's
errors imply are built by the HTTP layer from their fields.
"""

from __future__ import annotations

import inspect

import attrs
import pytest

from ocireg.api.errors import WIRE, error_headers
from ocireg.api.uploadheaders import upload_location, upload_range
from ocireg.domain import errors as domain_errors
from ocireg.domain.errors import (
    UPLOADS_RETRY_AFTER,
    ContentUnknown,
    DeleteRefused,
    DomainError,
    NotInRepository,
    TooManyUploads,
    UploadRangeInvalid,
    VersionUndeletable,
)
from ocireg.errors import TOO_MANY_REQUESTS, RegistryError

TYPED = [
    cls for _, cls in inspect.getmembers(domain_errors, inspect.isclass)
    if issubclass(cls, DomainError) and cls is not DomainError
]


@pytest.mark.parametrize("cls", TYPED, ids=lambda cls: cls.__name__)
def test_every_typed_error_is_a_registry_error_with_a_wire_form(cls):
    assert issubclass(cls, RegistryError)
    assert cls.code in WIRE


def test_a_typed_error_cannot_be_changed_once_raised():
    error = NotInRepository("tag", "v1", "library/app")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        error.repository = "other"  # type: ignore[misc]
    assert attrs.evolve(error, key="v2").message == "tag 'v2' is not in repository 'library/app'"


@pytest.mark.parametrize(
    ("error", "message", "detail"),
    [
        (NotInRepository("tag", "v1", "a/b"), "tag 'v1' is not in repository 'a/b'",
         {"tag": "v1"}),
        (NotInRepository("manifest", "sha256:1", "a/b"),
         "manifest sha256:1 is not in repository 'a/b'", {"digest": "sha256:1"}),
        (DeleteRefused("blob", "sha256:1", "a/b", ("sha256:2",)),
         "blob sha256:1 is part of manifest sha256:2 in repository 'a/b': "
         "delete the manifest first", {"digest": "sha256:1", "manifests": ["sha256:2"]}),
        (DeleteRefused("manifest", "sha256:1", "a/b", ("sha256:2",)),
         "manifest sha256:1 is part of index sha256:2 in repository 'a/b': "
         "delete the index first", {"digest": "sha256:1", "manifests": ["sha256:2"]}),
        (VersionUndeletable("a/b", 0), "version 0, the empty start, of repository 'a/b' "
         "cannot be deleted", {"repository": "a/b", "version": 0}),
        (ContentUnknown("tag", ("v1",), "version 2 of repository 'a/b'", "add_tags.x"),
         "tag 'v1' is not in version 2 of repository 'a/b'",
         {"field": "add_tags.x", "tag": "v1"}),
        (ContentUnknown("blob", tuple(f"sha256:{i}" for i in range(30)), "version 2"),
         "blob sha256:0 is not in version 2", {"blobs": [f"sha256:{i}" for i in range(20)]}),
    ],
)
def test_message_and_detail_follow_from_the_fields(error, message, detail):
    assert error.message == message
    assert error.detail == detail
    assert str(error) == f"{error.code.name}: {message}"


def test_an_upload_out_of_range_says_where_the_upload_is_and_how_much_it_holds():
    error = UploadRangeInvalid("a/b", "u-1", 10, start=3)
    assert error.detail == {"uuid": "u-1", "size": 10}
    assert error_headers(error) == {
        "Range": upload_range(10), "Location": upload_location("a/b", "u-1"),
    }
    assert error_headers(error)["Range"] == "0-9"
    assert error_headers(error)["Location"] == "/v2/a/b/blobs/uploads/u-1"


def test_a_client_over_its_uploads_is_told_when_to_try_again():
    assert error_headers(TooManyUploads(3)) == {"Retry-After": str(UPLOADS_RETRY_AFTER)}


def test_an_untyped_error_keeps_the_headers_its_raiser_gave():
    error = RegistryError(TOO_MANY_REQUESTS, "slow down", headers={"Retry-After": "1"})
    assert error_headers(error) == {"Retry-After": "1"}
