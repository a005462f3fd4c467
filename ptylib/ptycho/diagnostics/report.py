"""The scenario report: pass/fail checks against the seed's exit criteria, as JSON and Markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ptylib.io.report import markdown_table


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level with dotted keys (``offsets.x.min``), for tables."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check(name: str, passed: bool, value: Any, threshold: Any) -> dict[str, Any]:
    """One row of the report's ``checks`` list."""
    return {"name": name, "passed": bool(passed), "value": value, "threshold": threshold}


def scenario_checks(training: Mapping[str, Any], reassembly: Mapping[str, Any] | None,
                    comparison: Mapping[str, Any] | None, bias: Mapping[str, Any] | None, *,
                    min_pearson: float, bias_tolerance: float) -> list[dict[str, Any]]:
    """No NaNs in training, the canvas fits, amplitude and phase correlate with the truth (coherent,
    non-blank structure), amplitude bias within tolerance after the optional rescale. A step that did not
    run (training stopped) fails its checks with value None."""
    nan = training.get("nan")
    checks = [check("no NaN in training", nan is None and bool(training.get("history")),
                    None if nan is None else f"epoch {nan['epoch']}: {nan['tensor']}", "none")]
    fits = reassembly is not None and reassembly["fits_canvas"]
    checks.append(check("canvas fits every patch", fits,
                        None if reassembly is None else f"{reassembly['canvas_used_px']} px used, "
                        f"{reassembly['canvas_required_px']} px required, "
                        f"{reassembly['lost_energy_fraction']:.3g} energy lost", "used ≥ required"))
    for part in ("amplitude", "phase"):
        r = None if comparison is None else comparison[part]["pearson"]
        checks.append(check(f"{part} Pearson r vs truth", r is not None and math.isfinite(r) and r >= min_pearson,
                            r, f"≥ {min_pearson}"))
    ratio = None if bias is None else bias["mean_ratio"]
    ok = ratio is not None and math.isfinite(ratio) and abs(ratio - 1.0) <= bias_tolerance
    checks.append(check("amplitude mean ratio (pred/true) after rescale", ok, ratio, f"1 ± {bias_tolerance}"))
    return checks


def report_record(scenario: str, checks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """``report.json``: the checks and a top-level ``passed`` (all checks passed)."""
    return {"scenario": scenario, "passed": all(c["passed"] for c in checks), "checks": checks, **extra}


def report_markdown(record: Mapping[str, Any], images: Mapping[str, str]) -> str:
    """``report.md``: verdict, the checks table and the side-by-side PNGs (relative links)."""
    verdict = "PASSED" if record["passed"] else "FAILED"
    rows = [{"check": c["name"], "result": "pass" if c["passed"] else "FAIL", "value": c["value"],
             "threshold": c["threshold"]} for c in record["checks"]]
    parts = [f"# Sim-lines scenario `{record['scenario']}`: {verdict}\n", markdown_table(rows)]
    parts += [f"\n### {title}\n\n![{title}]({path})\n" for title, path in images.items()]
    return "\n".join(parts)
