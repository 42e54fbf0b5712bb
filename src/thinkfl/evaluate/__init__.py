"""Evaluation: metrics, a resumable runner over methods x cases, reports and plots."""

from thinkfl.evaluate.metrics import KS, CaseResult, accuracy, markdown, summarize
from thinkfl.evaluate.runner import (
    EvaluationError,
    case_results,
    load_done,
    method_names,
    run_method,
    write_json,
)

__all__ = [
    "KS",
    "CaseResult",
    "EvaluationError",
    "accuracy",
    "case_results",
    "load_done",
    "markdown",
    "method_names",
    "run_method",
    "summarize",
    "write_json",
]
