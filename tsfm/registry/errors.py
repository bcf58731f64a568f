"""The registry's errors: each says what was asked, where the registry is and what to do."""

from __future__ import annotations


class RegistryError(RuntimeError):
    """A registry operation failed (the message says why and what to do)."""


class RegistryNotFound(RegistryError, LookupError):
    """No such registry database, registered model, version or alias (the message lists what exists)."""


class RegistryLocked(RegistryError):
    """The registry database stayed locked by another writer for longer than the lock timeout."""
