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

# One interpreter per module, each forked from a parent that has imported third-party libraries only, so each module
# is imported first and alone: a cycle through it fails its import. Which libraries: those a throwaway child finds
# loaded once it has imported every module (their import is nearly all the time; the project's own code is cheap),
# imported by the parent in the same order. No module of this project (nor any file of the repository) is loaded
# before a fork, and each child has its own working directory and LETTINGO_HOME, so several run at once and what one
# creates is its own.
DRIVER = textwrap.dedent(
    """
    import gc, importlib, json, os, sys

    def excepthook(*exc):
        sys.__excepthook__(*exc)
        sys.stderr.flush()
        os._exit(1)

    # The parent ends without the interpreter's finalization, where a preloaded native library (triton's nanobind)
    # reports leaks that would push an error's traceback out of the stderr tail the test shows.
    sys.excepthook = excepthook
    PROJECT = ("streams", "lettingo", "trainer", "bench", "tests")
    repo, root, modules = sys.argv[1], os.getcwd(), sys.argv[2:]

    def ours(name, module):
        path = os.path.abspath(getattr(module, "__file__", None) or os.sep)
        inside = path.startswith(repo + os.sep) and not path.startswith(sys.prefix + os.sep)
        return name.split(".")[0] in PROJECT or inside

    def fork(child):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                out = child()
            except BaseException as e:
                out = f"{type(e).__name__}: {e}"[:4000]
            with os.fdopen(write, "wb") as pipe:
                pipe.write(out.encode())
            os._exit(0)
        os.close(write)
        return pid, read

    def answer(pid, read):
        with os.fdopen(read, "rb") as pipe:
            out = pipe.read().decode()
        os.waitpid(pid, 0)
        return out

    def third_party():
        for module in modules:
            try:
                importlib.import_module(module)
            except BaseException:
                pass  # reported by its own child below
        return json.dumps([name for name, module in list(sys.modules.items()) if not ours(name, module)])

    for name in json.loads(answer(*fork(third_party))):
        try:
            importlib.import_module(name)
        except BaseException:
            pass  # a name that is no importable module (an alias, a generated module): its child imports it anyway
    assert not [name for name, module in sys.modules.items() if ours(name, module)]
    # What the parent holds is left out of the children's collections (a collection would touch, so copy, every
    # page of it) and out of gc.get_objects(): a child sees the objects its import made.
    gc.freeze()

    def import_alone(module, folder):
        def child():
            os.chdir(os.path.join(folder, "cwd"))
            os.environ["LETTINGO_HOME"] = os.path.join(folder, "home")
            importlib.import_module(module)
            import faust
            from streams.app import Worker
            from streams.runtime import Runtime
            kinds = (faust.App, Worker, Runtime)
            built = [type(o).__name__ for o in gc.get_objects() if isinstance(o, kinds)]
            return f"built {built}"[:4000] if built else ""
        return child

    results, running, pending = {}, {}, list(enumerate(modules))
    at_once = max(1, min(4, len(os.sched_getaffinity(0))))
    while pending or running:
        while pending and len(running) < at_once:
            n, module = pending.pop(0)
            folder = os.path.join(root, str(n))
            for sub in ("cwd", "home"):
                os.makedirs(os.path.join(folder, sub))
            pid, read = fork(import_alone(module, folder))
            running[pid] = (module, folder, read)
        pid, _ = os.wait()
        module, folder, read = running.pop(pid)
        with os.fdopen(read, "rb") as pipe:
            error = pipe.read().decode()
        made = os.listdir(os.path.join(folder, "cwd")) + os.listdir(os.path.join(folder, "home"))
        if made:
            error += f" created {sorted(made)}"
        results[module] = error
    if set(os.listdir(root)) != {str(n) for n in range(len(modules))}:
        results["(all together)"] = f"created {sorted(os.listdir(root))}"
    print(json.dumps(results), flush=True)
    os._exit(0)
    """
)


def test_importing_any_streams_module_configures_nothing_and_creates_nothing(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LETTINGO_")}
    # Settings that refuse to build (SASL without credentials): an import that read them fails.
    environ |= {
        "LETTINGO_HOME": str(tmp_path / "home"),
        "LETTINGO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(REPO), *MODULES],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,  # a folder made relative to the working directory shows too
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(results) - {"(all together)"} == set(MODULES)
    failed = {module: error for module, error in results.items() if error}
    assert not failed, failed
