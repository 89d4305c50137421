"""The HTTP side: the registry API, the management API and the request body path."""
