"""Blob stores: where blob bytes and in-progress uploads live."""
