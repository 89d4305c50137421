"""ocireg: a container registry where every push is a new repository version."""

from importlib import metadata


def version() -> str:
    """The installed ocireg's version, or "unknown" when it runs from a checkout not installed."""
    try:
        return metadata.version("ocireg")
    except metadata.PackageNotFoundError:
        return "unknown"
