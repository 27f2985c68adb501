"""One settings point for device, seed, threads and progress bars.

Everything that decides *where* and *how reproducibly* code runs goes through here, so
that the workflow's scripts, the command line and the Python API behave alike.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from typing import Literal

import numpy as np

logger = logging.getLogger("scdsec")

DeviceOption = Literal["auto", "cpu", "cuda"]


def select_device(device: DeviceOption | str = "auto"):
    """Return the ``torch.device`` to train on.

    ``auto`` takes the first visible CUDA device (``CUDA_VISIBLE_DEVICES`` decides which
    devices are visible) and otherwise falls back to the CPU with one log line.
    ``cuda`` without a usable GPU is an error rather than a silent fallback.
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            chosen = torch.device("cuda", 0)
            logger.info("Using GPU %s (%s)", chosen, torch.cuda.get_device_name(chosen))
            return chosen
        threads = torch.get_num_threads()
        logger.info(
            "No CUDA device visible: training on the CPU (%d thread%s)",
            threads,
            "" if threads == 1 else "s",
        )
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for, but no CUDA device is visible")
    return torch.device(device)


#: The variables that size the thread pools of OpenMP, the BLAS libraries, numba and torch
#: (read when each library loads).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def limit_threads(threads: int | None) -> None:
    """Keep every thread pool of this process to ``threads``: the environment variables of
    :data:`THREAD_VARIABLES` for libraries loaded later, threadpoolctl for the OpenMP and BLAS
    pools already loaded, numba and torch when imported; and ``OMP_WAIT_POLICY=PASSIVE`` unless
    set, for OpenMP runtimes loaded later. A workflow step calls it once, at its
    start, with its rule's ``threads`` (through :func:`scdsec.pipeline.step_log`), so that the
    jobs Snakemake runs side by side do not oversubscribe the cores it gave them. Meant for a
    process that runs one step: numba's pool cannot grow after it has started, so a session
    that needs other counts later should use :func:`set_threads`."""
    if not threads:
        return
    threads = int(threads)
    # OpenMP threads that wait at a barrier sleep instead of spinning (unless the user chose):
    # with other jobs on the cores, spinning threads take the time of the one they wait for.
    # Read when an OpenMP runtime loads (torch's at its import). Training, 2 threads, one core
    # busy: 8.8–9.8 s passive against 15.2–16.4 s spinning; alone 7.3–7.8 s against 5.8–6.7 s
    # (benchmarks/omp_wait_policy.py → benchmarks/results/…-omp-wait-policy.tsv).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for variable in THREAD_VARIABLES:
        if variable == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            continue  # numba reads it again later and refuses a change once its pool runs
        os.environ[variable] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def set_threads(threads: int | None) -> None:
    """Make torch (and the BLAS libraries it drives) use ``threads`` CPU threads.

    Unlike :func:`limit_threads` it leaves the environment alone, so it can be called again
    with another count in the same session."""
    if not threads:
        return
    import torch

    torch.set_num_threads(int(threads))
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(threads))
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


def resolve_deterministic(deterministic: bool | str, device) -> bool:
    """``deterministic`` as a bool: ``"auto"`` means on the CPU only.

    On the CPU deterministic kernels cost no measurable time (``benchmarks/determinism.py``)
    and make reruns with the same seed identical; on a GPU they slow scatter-adds down, so
    ``"auto"`` leaves them off there.

    Raises
    ------
    InputError
        For any value other than True, False or ``"auto"``.
    """
    from ._errors import InputError

    if deterministic == "auto":
        return getattr(device, "type", str(device)) == "cpu"
    if isinstance(deterministic, bool):
        return deterministic
    raise InputError(f"deterministic must be true, false or auto, got {deterministic!r}")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` ask torch for deterministic kernels.

    On the CPU with one thread, seeding alone makes reruns identical on the same machine. With
    several CPU threads, and on a GPU, some kernels (sparse matrix products, scatter-adds) sum
    in a varying order unless ``deterministic=True``, which costs speed: on the demo with two
    CPU threads, two reruns differed by up to 0.02 in the embedding and in 1 of 3000 labels
    without it, and were identical with it.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds libraries that use the global state
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


def progress_enabled(stream=None) -> bool:
    """Progress bars show only when the output is a terminal (not in logs or CI)."""
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def configure_logging(level: int = logging.INFO, filename: str | os.PathLike | None = None) -> None:
    """Send the package's log lines to stderr (or ``filename``) with timestamps."""
    handler: logging.Handler = (
        logging.FileHandler(filename) if filename else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
