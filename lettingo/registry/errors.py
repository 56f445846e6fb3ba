"""Errors of the model registry; each message names the model, the version and what is wrong."""

from __future__ import annotations

from lettingo.errors import ModelError


class RegistryError(ModelError):
    """Base class of every registry failure."""


class VersionNotFoundError(RegistryError):
    """The version (or the champion) asked for does not exist."""


class CorruptArtifactError(RegistryError):
    """A version's files do not match the sha256 recorded in its manifest: it must not be loaded."""
