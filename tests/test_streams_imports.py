"""Importing any ``streams`` module has no side effect and no cycle: it reads no setting, builds no Faust app or
worker and creates no folder; a worker exists only once :func:`streams.app.create_worker` builds one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO

MODULES = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for path in (REPO / "streams").rglob("*.py")
)

# One interpreter per module, each forked from a parent that has imported the third-party libraries only (their
# import is most of the time; no module of this project is loaded before the fork), so each module is imported
# first and alone: a cycle through it fails its import.
DRIVER = textwrap.dedent(
    """
    import gc, importlib, json, os, sys
    import aiokafka, faust, pydantic, typer
    third_party = ("torch", "transformers", "numpy", "scipy", "sklearn.linear_model", "rocksdict", "tenacity")
    for optional in (*third_party, "prometheus_client"):
        try:
            importlib.import_module(optional)
        except ImportError:
            pass
    assert not any(m.split(".")[0] in ("streams", "lettingo") for m in sys.modules)
    home, results = os.environ["LETTINGO_HOME"], {}
    for module in sys.argv[1:]:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                importlib.import_module(module)
                from streams.app import Worker
                from streams.runtime import Runtime
                kinds = (faust.App, Worker, Runtime)
                built = [type(o).__name__ for o in gc.get_objects() if isinstance(o, kinds)]
                error = f"built {built}" if built else ""
            except BaseException as e:
                error = f"{type(e).__name__}: {e}"
            os.write(write, error.encode()[:4000])
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            error = pipe.read().decode()
        os.waitpid(pid, 0)
        made = sorted(set(os.listdir(".")) - {"home"}) + os.listdir(home)
        if made:
            error += f" created {made}"
        results[module] = error
    print(json.dumps(results))
    """
)


def test_importing_any_streams_module_configures_nothing_and_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LETTINGO_")}
    # Settings that refuse to build (SASL without credentials): an import that read them fails.
    environ |= {
        "LETTINGO_HOME": str(home),
        "LETTINGO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *MODULES],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,  # a folder made relative to the working directory shows too
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(results) == set(MODULES)
    failed = {module: error for module, error in results.items() if error}
    assert not failed, failed
