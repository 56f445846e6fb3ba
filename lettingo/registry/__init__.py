"""The model registry: numbered, checksummed, atomically published model versions with a champion pointer.

Pure Python + fsspec: the trainer publishes into it, workers load from it, nothing here knows Kafka.
"""

from lettingo.registry.base_models import (
    BaseModelManifest,
    BaseModelStore,
    content_id,
    is_ref,
    ref_of,
    resolve_base_model,
)
from lettingo.registry.errors import CorruptArtifactError, RegistryError, VersionNotFoundError
from lettingo.registry.manifest import MANIFEST_NAME, Manifest, ManifestDraft, hash_folder
from lettingo.registry.state import RegistryState
from lettingo.registry.store import DEFAULT_MODEL_NAME, ModelRegistry

__all__ = [
    "DEFAULT_MODEL_NAME",
    "MANIFEST_NAME",
    "BaseModelManifest",
    "BaseModelStore",
    "CorruptArtifactError",
    "Manifest",
    "ManifestDraft",
    "ModelRegistry",
    "RegistryError",
    "RegistryState",
    "VersionNotFoundError",
    "content_id",
    "hash_folder",
    "is_ref",
    "ref_of",
    "resolve_base_model",
]
