"""The compilation cache and the program store trust no entry blindly and can be shared: a damaged or swapped
entry is said in one line, rebuilt and replaced; entries get the umask's permissions; a moved cache hits."""

import json
import os
import shutil
import stat

import jax
import numpy as np
import pytest
from conftest import ROOT, run_cli

from workflow_src.compile_cache import CACHE_SUFFIX, AtomicFileCache, CompileWatch, configure_jax, seal
from workflow_src.evaluate.run import read_run_infos

BASELINES_SPEC = json.dumps({"seed": 3, "episodes": 2, "interventions": 3, "n_obs": 4, "min_suite_episodes": 1,
                             "baselines": ["random", "thompson_bandit"]})


@pytest.fixture
def use_cache(monkeypatch):
    """``use_cache(folder)`` makes ``folder`` this process's compilation cache (as a job's ``ACBO_JAX_CACHE``);
    the tests' shared cache is restored afterwards."""
    from jax._src import compilation_cache

    def use(folder):
        monkeypatch.setenv("ACBO_JAX_CACHE", str(folder))
        configure_jax(None)
        assert compilation_cache._cache.path == folder.resolve()
        return compilation_cache._cache

    yield use
    monkeypatch.setenv("ACBO_JAX_CACHE", str(ROOT / ".jax_cache"))
    configure_jax(None)


def compile_fresh(scale: float = 3.0) -> str:
    """Trace, lower and compile a new function (so the persistent cache is asked); where its executable came from."""
    with CompileWatch() as watch:
        compiled = jax.jit(lambda x: x * scale + 1).lower(np.arange(5.0)).compile()
    assert np.array_equal(compiled(np.arange(5.0)), np.arange(5.0) * scale + 1)  # it computes what it says
    return watch.source


def entries(folder):
    return sorted(folder.glob(f"jit__lambda-*{CACHE_SUFFIX}"))


def flip_a_byte(path, where: float = 0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))


COMPILED, CACHED = "compiled (cache miss, now stored)", "persistent cache"


def program_loads(log: str) -> list[tuple[str, str]]:
    """(executable source, program origin) of each suite run a job's log reports."""
    return [(info.source, info.origin) for info in read_run_infos(log)]


def damage_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "damaged entry" in line]


def test_a_damaged_entry_is_said_in_one_line_compiled_again_and_replaced(tmp_path, use_cache, capsys):
    use_cache(tmp_path)
    assert compile_fresh() == "compiled (cache miss, now stored)"
    (entry,) = entries(tmp_path)
    flip_a_byte(entry)
    damaged = entry.read_bytes()
    capsys.readouterr()
    assert compile_fresh() == "compiled (cache miss, now stored)"
    (line,) = damage_lines(capsys.readouterr().err)
    assert line.startswith(f"compilation cache: damaged entry {entry.name}: content does not match its checksum")
    assert entry.read_bytes() != damaged and entries(tmp_path) == [entry] and not list(tmp_path.glob("*.tmp"))
    assert compile_fresh() == "persistent cache" and not capsys.readouterr().err  # the replacement serves


def test_an_entry_under_another_key_is_never_used(tmp_path, use_cache, capsys):
    """A swapped file (one program's entry under another's name) computes the wrong thing if trusted."""
    use_cache(tmp_path)
    compile_fresh(3.0)
    (three,) = entries(tmp_path)
    compile_fresh(5.0)
    (five,) = set(entries(tmp_path)) - {three}
    shutil.copyfile(three, five)
    capsys.readouterr()
    assert compile_fresh(5.0) == "compiled (cache miss, now stored)"  # and computes x * 5 + 1 (compile_fresh)
    (line,) = damage_lines(capsys.readouterr().err)
    assert f"damaged entry {five.name}: holds the entry of another key (jit__lambda-" in line
    assert compile_fresh(5.0) == "persistent cache" and compile_fresh(3.0) == "persistent cache"


def test_an_entry_jax_cannot_load_is_replaced(tmp_path, use_cache):
    """An entry whose checksum holds but whose content JAX cannot load (JAX warns) is replaced, not kept."""
    use_cache(tmp_path)
    compile_fresh()
    (entry,) = entries(tmp_path)
    key = entry.name.removesuffix(CACHE_SUFFIX)
    entry.write_bytes(seal(key, b"not an executable"))
    with pytest.warns(UserWarning, match="Error reading persistent compilation cache entry"):
        assert compile_fresh() == "compiled (cache miss, now stored)"
    assert b"not an executable" not in entry.read_bytes()
    assert compile_fresh() == "persistent cache"


def test_an_older_unsealed_entry_is_replaced(tmp_path, use_cache, capsys):
    """Entries written by plain JAX or before entries were sealed are compiled again once, then served."""
    use_cache(tmp_path)
    compile_fresh()
    (entry,) = entries(tmp_path)
    entry.write_bytes(entry.read_bytes().split(b"\n", 3)[3])  # the bare content, as plain JAX writes it
    capsys.readouterr()
    assert compile_fresh() == "compiled (cache miss, now stored)"
    assert "no checksum header" in damage_lines(capsys.readouterr().err)[0]
    assert compile_fresh() == "persistent cache"


def test_a_copied_cache_still_hits(tmp_path, use_cache):
    """No key holds the cache folder's path (JAX put its GPU autotune folder's path in every key)."""
    use_cache(tmp_path / "here")
    assert compile_fresh() == "compiled (cache miss, now stored)"
    shutil.copytree(tmp_path / "here", tmp_path / "moved")
    use_cache(tmp_path / "moved")
    assert compile_fresh() == "persistent cache"


@pytest.mark.parametrize("umask", [0o002, 0o022, 0o077])
def test_entries_get_the_permissions_the_umask_allows(tmp_path, umask):
    """Group-readable (and -writable under umask 002) entries, so a cache shared by a group hits for all."""
    previous = os.umask(umask)
    try:
        AtomicFileCache(tmp_path / "cache").put("k", b"executable")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "cache" / f"k{CACHE_SUFFIX}").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o777 & ~umask


def test_jobs_repair_a_damaged_cache_and_a_moved_cache_hits(tmp_path):
    """Across jobs: a cache moved elsewhere serves both the exported program and its executable; one flipped
    byte in each is said in one line each, the program traced and compiled again, both entries replaced, the
    table byte-identical to a clean run's; the following job hits both again."""
    suite = tmp_path / "classic.json"
    run_cli("suite", "generate", "heldout-classic", "--out", suite, check=True)

    def job(cache, name):
        proc = run_cli("baselines", "--suite", suite, "--out", tmp_path / f"{name}.parquet", "--spec", BASELINES_SPEC,
                       env={**os.environ, "ACBO_JAX_CACHE": str(tmp_path / cache)}, check=True)
        assert (tmp_path / f"{name}.parquet").read_bytes() == (tmp_path / "clean.parquet").read_bytes(), name
        return proc.stdout + proc.stderr

    proc = run_cli("baselines", "--suite", suite, "--out", tmp_path / "clean.parquet", "--spec", BASELINES_SPEC,
                   env={**os.environ, "ACBO_JAX_CACHE": str(tmp_path / "first")}, check=True)
    assert program_loads(proc.stdout) == [(COMPILED, "traced")], proc.stdout
    (tmp_path / "first").rename(tmp_path / "moved")
    log = job("moved", "moved")
    assert program_loads(log) == [(CACHED, "stored export")] and not damage_lines(log), log

    cache = tmp_path / "moved"
    (export,) = (cache / "exported").glob("*.jaxexport")
    (executable,) = cache.glob(f"jit_call-*{CACHE_SUFFIX}")  # the evaluation program's
    for entry in (export, executable):
        flip_a_byte(entry, 0.7)
    log = job("moved", "repaired")
    assert sorted(line.split(":")[0] for line in damage_lines(log)) == ["compilation cache", "program store"], log
    assert len(damage_lines(log)) == 2 and "Traceback" not in log, log
    assert program_loads(log) == [(COMPILED, "traced")], log
    log = job("moved", "after")
    assert program_loads(log) == [(CACHED, "stored export")] and not damage_lines(log), log
    assert not list(cache.rglob("*.tmp"))


def test_a_cache_folder_that_cannot_be_created_is_one_warning_even_as_root():
    """Issue 27: permission bits do not bind root, so the pre-check passed and creating the folder failed."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "from workflow_src.compile_cache import configure_jax; "
                           "configure_jax(None)"], cwd=ROOT, env={**os.environ, "ACBO_JAX_CACHE": "/proc/acbo-cache"},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("acbo: warning: the compilation cache /proc/acbo-cache cannot be")
    assert proc.stderr.count("\n") == 1 and "running without it" in proc.stderr
