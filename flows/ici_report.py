"""The ICI summary report of a run root as its own flow: what the completion trigger of an ICI loop starts.

It reads only the run root's files (ledger, sidecar, per-run outputs), so it can also be run by hand on
any run root, finished or not, from the UI or with ``prefect deployment run 'ici-report/ici-report'``.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.runroot.layout import LEDGER_NAME
from ptylib.ici.runroot.ledger import read_ledger
from tasks.artifacts import publish_markdown
from tasks.ici import report_task, summary_task


@flow(name="ici-report", flow_run_name="ici-report-{run_root}", log_prints=True)
def ici_report(run_root: str, proposer: ProposerOptions | None = None) -> dict[str, object]:
    """Publish the ledger summary and the final report (figures, plots) of an ICI run root.

    Parameters
    ----------
    run_root : folder of an ICI loop (it holds image_run_log.csv).
    proposer : the proposer's knobs used for refined-centre figures (default: the seed's).
    """
    root = Path(run_root).resolve()
    if not (root / LEDGER_NAME).is_file():
        raise FileNotFoundError(f"run_root {root}: no {LEDGER_NAME} (not an ICI run root, or nothing ingested yet)")
    histories = read_ledger(root / LEDGER_NAME)
    last_run = max(row.run_n for history in histories.values() for row in history.rows)
    summary = summary_task(str(root), last_run)
    report = report_task(str(root), list(histories), proposer or ProposerOptions())
    publish_markdown("ici-report", report["markdown"], f"ICI report of {root}")
    print(summary)
    return {"run_root": str(root), "figures": report["figures"], "report": report["report"]}
