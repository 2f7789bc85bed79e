"""The DVC pipeline itself, end to end on a tiny copy of the repository:
a training stage killed with SIGKILL mid-run resumes under `dvc repro` and ends with the
same artifacts as an uninterrupted run; outputs are never half-written; a second
`dvc repro` does nothing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pxby_lib.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = "rnn_bi_pxby_conv_d81_s64_l2"
RUN = f"pokemon-{MODEL}"

pytestmark = pytest.mark.usefixtures("raw_data")  # fails with `make data` advice if absent


def make_project(dest: Path, epochs: int) -> Path:
    """A git + DVC copy of the repository with one model, one seed and tiny settings."""
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split("\n")
    for rel in filter(None, tracked):
        src = ROOT / rel
        outputs = ("artifacts/", "models/", "eval/", "metrics/", "reports/", "dvc.lock")
        if src.is_file() and not rel.startswith((".dvcstore/", "tests/", "vendor/", *outputs)):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    shutil.copytree(ROOT / "data", dest / "data")
    from pxby_lib.config import load_raw

    params = load_raw(ROOT / "params.yaml", ROOT / "profiles" / "smoke.yaml")
    params["models"] = {MODEL: {**params["models"][MODEL], "seeds": [0]}}
    params["datasets"] = {"pokemon": {**params["datasets"]["pokemon"], "limit_items": 10}}
    params["runs"] = {RUN: {"dataset": "pokemon", "row": MODEL}}
    params["train"].update(max_epochs=epochs, patience=0, eval_every=1, seq_len=32, sample_stride=32)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], git + ["commit", "-qm", "t"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def env(progress: str = "0") -> dict[str, str]:
    e = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PXBY_PROGRESS=progress)
    e["PYTHONPATH"] = str(ROOT)  # the project under test, whatever is installed
    return e


def dvc(project: Path, *args: str, timeout: int = 300, progress: str = "0") -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dvc"), *args], cwd=project, env=env(progress), text=True,
                          capture_output=True, timeout=timeout)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), whatever session or group it started."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)"
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_sigkill_then_repro_resumes_to_identical_artifacts(tmp_path):
    epochs = 4
    clean = make_project(tmp_path / "clean", epochs)
    run = dvc(clean, "repro", f"train@{RUN}")
    assert run.returncode == 0, run.stdout + run.stderr
    out = Path("models") / "pokemon" / MODEL / "s0"

    killed = make_project(tmp_path / "killed", epochs)
    assert dvc(killed, "repro", "prepare@pokemon").returncode == 0
    proc = subprocess.Popen([str(BIN / "dvc"), "repro", f"train@{RUN}"], cwd=killed, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    resume = killed / ".resume" / "pokemon" / MODEL / "s0" / "resume.pt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if resume.exists():
            try:
                if read_checkpoint(resume)["epoch"] >= 2:  # mid-run: epochs 3 and 4 to go
                    break
            except ValueError:
                pytest.fail("resume.pt was visible half-written")
        time.sleep(0.2)
    assert proc.poll() is None, "training finished before it could be interrupted"
    # a crash takes every process down at once: dvc, papermill AND the Jupyter kernel,
    # which jupyter_client starts in a session of its own (so killpg alone misses it, and
    # the orphaned kernel could finish the run and delete resume.pt behind the test's back)
    tree = [proc.pid, *descendants(proc.pid)]
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (killed / out / "last.pt").exists(), "last.pt must only appear at the end"
    for leftover in (killed / out).glob("*"):
        assert not leftover.name.endswith(".tmp"), f"half-written file left: {leftover}"

    done = read_checkpoint(resume)["epoch"]  # the last epoch that completed before the kill
    rerun = dvc(killed, "repro", f"train@{RUN}", progress="lines")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    said = rerun.stdout + rerun.stderr  # one progress line per logged epoch that ran again
    assert f"epoch {epochs}/{epochs}" in said and f"epoch {done}/{epochs}" not in said, said
    for name in ("last.pt", "best.pt", "history.csv"):  # no timings in any of them
        assert digest(clean / out / name) == digest(killed / out / name), f"{name} differs after resume"
    notebook = Path("reports/notebooks/train") / f"{RUN}.ipynb"  # stripped: no timings
    assert digest(clean / notebook) == digest(killed / notebook), "the executed notebooks differ"
    again = dvc(killed, "repro", f"train@{RUN}")
    said = again.stdout + again.stderr
    assert again.returncode == 0 and ("didn't change" in said or "up to date" in said), said


@pytest.mark.slow
def test_make_paper_mechanics_as_a_dvc_experiment(tmp_path):
    """`make paper` = `dvc exp run` with profiles/paper.yaml as -S flags: on the tiny
    project, the experiment trains with the paper's schedule (seq_len 256, stride 32, a log
    every 5 epochs, no early stop), here cut to 2 epochs by one more flag."""
    from pxby_lib.config import _read_yaml, set_flags

    project = make_project(tmp_path / "paper", epochs=1)
    flags = [part for flag in set_flags(_read_yaml(ROOT / "profiles" / "paper.yaml"))
             for part in flag.split(" ", 1)]
    run = dvc(project, "exp", "run", "-n", "paper-tiny", *flags, "-S", "train.max_epochs=2",
              f"train@{RUN}", timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    params = yaml.safe_load((project / "params.yaml").read_text())  # applied in the workspace
    assert params["train"]["seq_len"] == 256 and params["train"]["sample_stride"] == 32
    assert params["train"]["patience"] == 0 and params["evaluate"]["max_items"] == 0
    history = (project / "models/pokemon" / MODEL / "s0/history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "2"]  # epoch 0 and the final
    shown = dvc(project, "exp", "show", "--json")
    assert shown.returncode == 0 and "paper-tiny" in shown.stdout
