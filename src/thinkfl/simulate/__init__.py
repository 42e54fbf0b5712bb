"""Simulated microservice systems with labelled failures, written as canonical stores."""

from thinkfl.simulate.faults import LEVEL_OF, FaultType
from thinkfl.simulate.generate import PRESETS, Difficulty, SimulationSettings, simulate
from thinkfl.simulate.topology import System, make_system

__all__ = [
    "LEVEL_OF",
    "PRESETS",
    "Difficulty",
    "FaultType",
    "SimulationSettings",
    "System",
    "make_system",
    "simulate",
]
