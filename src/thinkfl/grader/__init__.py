"""The grader: matching rules and the multi-factor reward terms (paper §3, with fixes)."""

from thinkfl.grader.grader import STAGES, TERMS, MultiFactorGrader, Score, Term, Weights
from thinkfl.grader.matching import MatchLevel, hits, rank_of_truth
from thinkfl.grader.terms import (
    PathCache,
    TermSettings,
    diversity,
    format_score,
    hallucination,
    recall,
    route,
    tool_path,
    visited,
)

__all__ = [
    "STAGES",
    "TERMS",
    "MatchLevel",
    "MultiFactorGrader",
    "PathCache",
    "Score",
    "Term",
    "TermSettings",
    "Weights",
    "diversity",
    "format_score",
    "hallucination",
    "hits",
    "rank_of_truth",
    "recall",
    "route",
    "tool_path",
    "visited",
]
