"""Training: SFT cold start and progressive multi-stage GRPO (paper §4).

`run_stage(load_config(path))` trains one stage; stages of one run share its folder:
RUN/<stage>/ holds adapter/ (or model/), adapter.gguf, metrics.jsonl/.csv, rollouts.jsonl,
trajectories.jsonl and checkpoints/. `report(RUN)` draws the curves of every stage.
"""

from thinkfl.train.config import ORDER, Stage, TrainConfig, TrainError, load_config
from thinkfl.train.data import Question, load_questions, split_by_fault, training_questions
from thinkfl.train.pipeline import StageResult, run_stage
from thinkfl.train.report import report
from thinkfl.train.tokens import Tokenized, tokenize_conversation

__all__ = [
    "ORDER",
    "Question",
    "Stage",
    "StageResult",
    "Tokenized",
    "TrainConfig",
    "TrainError",
    "load_config",
    "load_questions",
    "report",
    "run_stage",
    "split_by_fault",
    "tokenize_conversation",
    "training_questions",
]
