"""Figures the test bed measures during a run, per flavour, printed at the end of the run.

`make test` runs each flavour's bed in its own pytest-xdist worker, so the figures are kept in
this process (TIMINGS, which tests read back) and also written, per flavour, to a file in
FIGURES_DIR that the controller merges for its summary. The controller empties that directory
when the session starts (clear_figures), so a summary never shows an earlier run's figures.
"""
import json
import os
from pathlib import Path

FIGURES_DIR = Path(os.environ.get("XEN_SUSPEND_TESTBED_FIGURES",
                                  Path(__file__).resolve().parents[3] / "build" / "testbed-figures"))
TIMINGS = {}


def record(flavour, **figures):
    TIMINGS.setdefault(flavour, {}).update(figures)
    _write(flavour + ".json", TIMINGS[flavour])


def note_unavailable(reason):
    """A reason the bed could not run here, for the controller's loud summary."""
    _write("unavailable-%d.json" % os.getpid(), _read("unavailable-%d.json" % os.getpid(), []) + [reason])


def clear_figures():
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    for path in FIGURES_DIR.glob("*.json"):
        path.unlink()


def collected():
    """(figures per flavour, unavailable reasons) written by every process of this session."""
    figures, unavailable = {}, []
    for path in sorted(FIGURES_DIR.glob("*.json")) if FIGURES_DIR.is_dir() else []:
        data = _read(path.name, None)
        if path.name.startswith("unavailable-"):
            unavailable.extend(data or [])
        elif data is not None:
            figures[path.stem] = data
    return figures, unavailable


def _read(name, default):
    try:
        return json.loads((FIGURES_DIR / name).read_text())
    except (OSError, ValueError):
        return default


def _write(name, data):
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    temporary = FIGURES_DIR / (".%s.%d" % (name, os.getpid()))
    temporary.write_text(json.dumps(data, sort_keys=True, default=str))
    os.replace(str(temporary), str(FIGURES_DIR / name))
