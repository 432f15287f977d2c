"""Execute the tutorial notebooks in place, so that their stored outputs are fresh.

    python tutorials/execute.py                 # every notebook whose code changed
    python tutorials/execute.py 06 08           # these (name prefixes), if their code changed
    python tutorials/execute.py --force 01      # re-run even if fresh
    python tutorials/execute.py --size small    # the test size (quick; outputs marked small)

Each executed notebook records in its metadata (``ebm_ppl.executed``) the SHA-256 of its code
cells, the size it ran at, the wall time and the versions. ``tests/test_tutorials.py`` fails when
a notebook's code no longer matches that hash, i.e. when code changed without re-execution.
The notebooks read their size from ``EBM_PPL_TUTORIAL_SIZE`` ("full", the default, or "small";
the test suite runs "small"). A notebook is written back only when every cell ran without error,
one notebook at a time, so an interrupted run loses at most the notebook it was running.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = ("full", "small")


def code_hash(nb) -> str:
    """SHA-256 of the notebook's code cells (their sources, in order); markdown is not hashed."""
    sources = [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"]
        if c["cell_type"] == "code"
    ]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


#: stderr lines that only describe the executing environment, not the tutorial (tqdm's notebook
#: bar needs ipywidgets, which the package does not require); dropped from stored outputs
NOISE = ("TqdmWarning: IProgress not found", "from .autonotebook import tqdm as notebook_tqdm")


def drop_noise(nb) -> None:
    """Remove :data:`NOISE` lines from the stderr outputs of ``nb`` (and outputs left empty)."""
    for cell in nb["cells"]:
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out["text"] if isinstance(out["text"], str) else "".join(out["text"])
                lines = text.splitlines(keepends=True)
                lines = [ln for ln in lines if not any(n in ln for n in NOISE)]
                if not "".join(lines).strip():
                    continue
                out["text"] = "".join(lines)
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept


def notebooks(prefixes: list[str]) -> list[Path]:
    paths = sorted(HERE.glob("*.ipynb"))
    if not prefixes:
        return paths
    chosen = [p for p in paths if any(p.name.startswith(x) for x in prefixes)]
    unknown = [x for x in prefixes if not any(p.name.startswith(x) for p in paths)]
    if unknown:
        raise SystemExit(f"error: no notebook in {HERE} starts with {unknown}")
    return chosen


def execute(path: Path, size: str, timeout: int, data: str | None) -> float:
    """Run every cell of ``path`` at ``size`` and write it back with its outputs; returns the
    wall time in seconds. Raises ``nbclient.exceptions.CellExecutionError`` on a failing cell."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    os.environ["EBM_PPL_TUTORIAL_SIZE"] = size  # the kernel inherits the environment
    if data:
        os.environ["EBM_PPL_DATA"] = data
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:  # files a notebook writes stay out of the tree
        nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": work}}
        ).execute()
    seconds = time.perf_counter() - start
    drop_noise(nb)
    import ebm_ppl

    nb.metadata.setdefault("ebm_ppl", {})["executed"] = {
        "source_sha256": code_hash(nb),
        "size": size,
        "seconds": round(seconds, 1),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "ebm_ppl": ebm_ppl.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Execute tutorial notebooks in place (outputs stored, code hash recorded).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("names", nargs="*", help="notebook name prefixes (default: all)")
    parser.add_argument("--size", choices=SIZES, default="full", help="tutorial size")
    parser.add_argument("--force", action="store_true", help="re-run fresh notebooks too")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument(
        "--data", default=os.environ.get("EBM_PPL_DATA"), help="data root (EBM_PPL_DATA)"
    )
    args = parser.parse_args(argv)
    failed = []
    for path in notebooks(args.names):
        nb = json.loads(path.read_text())
        done = nb.get("metadata", {}).get("ebm_ppl", {}).get("executed", {})
        if (
            not args.force
            and done.get("source_sha256") == code_hash(nb)
            and done.get("size") == args.size
        ):
            print(f"{path.name}: fresh ({done['size']}, {done['seconds']} s), skipped", flush=True)
            continue
        print(f"{path.name}: running at size {args.size} ...", flush=True)
        try:
            seconds = execute(path, args.size, args.timeout, args.data)
        except Exception as err:  # noqa: BLE001 - report and go on with the next notebook
            print(f"{path.name}: FAILED ({type(err).__name__}): {str(err)[-2000:]}", flush=True)
            failed.append(path.name)
            continue
        print(f"{path.name}: done in {seconds:.0f} s", flush=True)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
