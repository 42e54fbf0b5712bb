"""The grader: matching rules and (later) the multi-factor reward terms."""

from thinkfl.grader.matching import MatchLevel, rank_of_truth

__all__ = ["MatchLevel", "rank_of_truth"]
