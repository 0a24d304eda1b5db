"""Running one contender of ``pynn bench`` in a fresh ``python`` process: the child's first
lines (:data:`BOOT`), its environment, and reading its result back."""
import json
import os
import subprocess
import sys
import time

# The child's first lines: read the job, import torch first when asked (before numpy and
# pynn, as a user's script would), make sure a pynn contender imports the harness's pynn (the
# child runs in an empty temporary directory, so a source tree in the user's current directory
# cannot shadow it), then load the worker by path (loading it as pynn.bench._worker would
# import pynn itself).
BOOT = r"""
import json, os, sys
job = json.loads(sys.argv[1])
job["env_at_start"] = {k: os.environ.get(k) for k in job.pop("env_keys")}
if job.get("import_torch_first"):
    try:
        import torch
    except ImportError as exc:
        print(json.dumps({"status": "skipped", "reason": f"torch is not importable ({exc})"}))
        sys.exit(0)
import importlib.util
if job.get("pynn_file"):
    found = importlib.util.find_spec("pynn")  # finds, does not import
    if found is None or os.path.realpath(found.origin) != os.path.realpath(job["pynn_file"]):
        sys.path.insert(0, job["pynn_root"])
spec = importlib.util.spec_from_file_location("_pynn_bench_worker", job["worker"])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
result = worker.run(job)
if job.get("pynn_file") and "pynn" in sys.modules:
    import pynn
    if os.path.realpath(pynn.__file__) != os.path.realpath(job["pynn_file"]):
        raise SystemExit(f"the contender imported {pynn.__file__}, not the harness's "
                         f"{job['pynn_file']}")
print()
print(json.dumps(result))
"""


def child_environment():
    """The environment for the contenders: the user's (``import pynn`` sets no variable)."""
    return dict(os.environ)


def _loadavg():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def _run_process(job, env, cwd, timeout):
    load = _loadavg()
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", BOOT, json.dumps(job)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout} s"}
    wall = time.perf_counter() - started
    result = None
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                pass
            break
    if proc.returncode != 0 or result is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        return {"status": "error", "reason": f"exit status {proc.returncode}", "stderr": tail}
    result["process_seconds"] = wall
    result["loadavg_before"] = load
    return result


def _env_variants(name, child_env):
    """(label, extra environment) of the processes a contender runs per round.

    The floor runs twice: as the user's environment has it, and with OpenBLAS's idle workers
    going to sleep at once (pynn's ``OPENBLAS_THREAD_TIMEOUT=4``), since which of the two is
    faster depends on the machine: spinning workers start the next product sooner on a quiet
    machine and lose whole time slices on a busy one. The faster is the floor."""
    if name == "floor" and "OPENBLAS_THREAD_TIMEOUT" not in child_env:
        return [("", {}), ("OPENBLAS_THREAD_TIMEOUT=4", {"OPENBLAS_THREAD_TIMEOUT": "4"})]
    return [("", {})]
