"""ocireg: a container registry where every push is a new repository version."""
