"""Where and how code runs: pinned CPU numerics, devices, repository paths, progress output.

Pinned numerics (`pin_numerics`). The same parameters must give the same bytes on any
x86-64 machine with AVX2, so the CPU libraries behind torch are capped at AVX2 before
they start: ATen's kernels (`ATEN_CPU_CAPABILITY`), oneDNN (the LSTM, convolutions;
`ONEDNN_MAX_CPU_ISA`), MKL (matrix products; `MKL_CBWR=AVX2,STRICT`, its conditional
numerical reproducibility mode on the AVX2 branch, strict: without STRICT an AVX-512 Intel
machine still rounded differently, 4.7573622845588845 below; it also fixes the AVX2 code
path on AMD processors), numpy's runtime-dispatched loops (`NPY_DISABLE_CPU_FEATURES`:
no AVX-512), the native
Mamba scan (built with -mavx2 -mfma, not -march=native: models/scan_native.py) and the
C++ that inductor generates for the compiled Mamba scan (256-bit vectors). A machine with
AVX-512 would otherwise pick wider kernels that round differently (seen: the untrained
reference model's test loss 4.7573622845588845 there, 4.757362257504294 on AVX2). The
thread count is a parameter too (`compute.threads`): MKL's results depend on it.

The libraries read these variables once, when they first run, so `pin_numerics()` must
come before any torch operation: importing `pxby_lib` does it (the package's first
line), which covers `make`, `dvc repro`, the notebooks (their first cell imports
pxby_lib) and the tests (conftest imports pxby_lib before torch). `check_numerics()`
says whether the pins took effect. `PXBY_NUMERICS=native` opts out (own risk: results
then depend on the machine).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: pinning must run before it
    import torch

PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2,STRICT",
    # numpy's runtime-dispatched AVX-512 loops (np.log / np.exp in the batched BLEU gave
    # last-digit differences on an AVX-512 machine); names for numpy >= 2.3 and older ones
    # (unknown names are ignored)
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512CD AVX512_SKX "
                                "AVX512_CLX AVX512_CNL AVX512_KNL AVX512_KNM",
}
PINNED_CAPABILITY = "AVX2"  # what torch.backends.cpu.get_cpu_capability() then reports
INDUCTOR_SIMDLEN = 256  # bits: AVX2 vectors in the compiled scan's generated C++


def numerics_pinned() -> bool:
    return os.environ.get("PXBY_NUMERICS", "pinned") != "native"


def pin_numerics() -> None:
    """Set the instruction-set caps (see the module docstring); a no-op when opted out.
    Overrides what the environment says: a pinned run is the same everywhere."""
    if numerics_pinned():
        os.environ.update(PINNED_ENV)


def set_threads(threads: int) -> None:
    """torch's intra-op threads (and MKL's through it): part of the pinned numerics."""
    import torch

    if threads < 1:
        raise ValueError(f"compute.threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    if numerics_pinned():
        import torch._inductor.config as inductor

        inductor.cpp.simdlen = INDUCTOR_SIMDLEN


def check_numerics() -> list[str]:
    """Problems with the pinning in this process (empty when it holds)."""
    if not numerics_pinned():
        return ["PXBY_NUMERICS=native: numerics are not pinned"]
    import torch

    problems = [f"{k}={os.environ.get(k)!r}, pinned {v!r}" for k, v in PINNED_ENV.items()
                if os.environ.get(k) != v]
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != PINNED_CAPABILITY:
        problems.append(f"torch runs {capability} kernels, pinned {PINNED_CAPABILITY} (torch was "
                        "used before pxby_lib was imported: import pxby_lib first)")
    wide = numpy_wide_targets()
    if wide:
        problems.append(f"numpy dispatches {wide} (numpy was imported before pxby_lib: import "
                        "pxby_lib first)")
    return problems


def numpy_wide_targets() -> list[str]:
    """numpy's enabled dispatch targets above AVX2 (AVX-512 loops), [] when capped."""
    import numpy as np

    umath = (getattr(np, "_core", None) or np.core)._multiarray_umath
    features = getattr(umath, "__cpu_features__", {})
    return [t for t in getattr(umath, "__cpu_dispatch__", [])
            if ("512" in t or t == "X86_V4") and features.get(t)]


def numerics_record() -> dict:
    """What a compute table states about a run's numerics."""
    import torch

    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "pinned": numerics_pinned()}


# ----------------------------------------------------------------------------- devices


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda[:N]' fails clearly without CUDA."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"compute.device={name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


# ----------------------------------------------------------------------------- paths


def repo_root(start: str | Path | None = None) -> Path:
    """The folder holding dvc.yaml, searched upwards (notebooks run from notebooks/)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists():
            return folder
    return here


def resolve(path: str | Path, root: Path | None = None) -> Path:
    """A repository-relative path made absolute (absolute paths pass through)."""
    path = Path(path)
    return path if path.is_absolute() else (root or repo_root()) / path


def display_path(path: str | Path) -> str:
    """`path` relative to the repository when inside it (no machine-specific prefix)."""
    resolved = Path(path).resolve()
    root = repo_root()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


# ----------------------------------------------------------------------------- progress


def progress_mode() -> str:
    """'off', 'lines' (one line per logged epoch, on stderr) or 'bars' (tqdm).

    PXBY_PROGRESS (off/0, lines, bars) decides when set; CI is quiet; pipeline stages
    (PXBY_IN_PIPELINE=1, set in dvc.yaml) print lines (`say`), which reach the terminal
    and which `notebooks.strip` keeps out of the executed notebooks; a terminal or
    JupyterLab gets bars."""
    mode = os.environ.get("PXBY_PROGRESS", "").lower()
    if mode in ("0", "off"):
        return "off"
    if mode in ("lines", "bars"):
        return mode
    if os.environ.get("CI"):
        return "off"
    if os.environ.get("PXBY_IN_PIPELINE") == "1":
        return "lines"
    in_kernel = "ipykernel" in sys.modules
    return "bars" if in_kernel or sys.stderr.isatty() else "lines"


def say(line: str) -> None:
    """One progress line on the process's stderr (file descriptor 2), unless progress is
    off. At the descriptor, not `sys.stderr`: in a Jupyter kernel, and in the worker
    processes it starts, ipykernel captures descriptor 2 and shows it both in the notebook
    and on the terminal that runs the kernel (papermill's, in the pipeline), once."""
    if progress_mode() != "off":
        sys.stderr.flush()
        os.write(2, (line + "\n").encode())
