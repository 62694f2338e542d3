"""Training curves in dvclive's layout, written after every epoch, so that `dvc exp show` and
`dvc plots show` read a training while it runs (a queued experiment's too):
``<dir>/plots/metrics/<name>.tsv`` holds every epoch (dvclive's metric writer: ``step`` and the
value) and ``<dir>/metrics.json`` the last epoch's headline figures.

slimnet uses dvclive's writers rather than a ``dvclive.Live``: a Live opens the DVC repository and
git when it starts (about a second per training, and noise on stderr at exit) and, outside a DVC
project, would ``dvc init`` a plain git repository. The files are the ones a Live writes.
Every byte is a function of the curves (no timestamps), and a resumed training first writes the
epochs its checkpoint holds, so a killed and resumed run ends with the same files.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

from dvclive.plots import Metric
from dvclive.serialize import dump_json


class LiveCurves:
    """One stage's live curves, cleared when it starts. ``nested``: several trainings share the
    stage (the random variant's draws), each under its run name (``<run>/<metric>``)."""

    def __init__(self, directory: Path, nested: bool = False):
        self.directory, self.nested = directory, nested
        shutil.rmtree(directory, ignore_errors=True)
        (directory / "plots" / Metric.subfolder).mkdir(parents=True)
        self.summary: dict = {}
        dump_json(self.summary, self.metrics_file)

    @property
    def metrics_file(self) -> Path:
        return self.directory / "metrics.json"

    def log(self, rows: Iterable[dict], headline: Iterable[str], run: str) -> None:
        """Append ``rows`` (one per epoch, keyed by ``epoch``) to the curves; the summary keeps
        the last row's ``headline`` figures and its epoch."""
        headline = tuple(headline)
        for row in rows:
            step = row["epoch"]
            for key, value in row.items():
                if key != "epoch" and Metric.could_log(value):
                    metric = Metric(self._name(key, run), str(self.directory / "plots"))
                    metric.step = step
                    metric.dump(value)
            figures = {key: row[key] for key in headline if key in row}
            if self.nested:
                self.summary = {**self.summary, run: figures, "epoch": step}
            else:
                self.summary = {**figures, "epoch": step}
            dump_json(self.summary, self.metrics_file)

    def _name(self, key: str, run: str) -> str:
        return f"{run}/{key}" if self.nested else key


def write_empty(directory: Path) -> None:
    """The live folder of a training that did not run (another search.method, no slimmable
    targets): an empty summary and one header-only curve, ``not_trained``. A folder holding no
    file would vanish from a git clone, and DVC would call the stage changed there."""
    LiveCurves(directory)
    (directory / "plots" / Metric.subfolder / "not_trained.tsv").write_text("step\tnot_trained\n")
