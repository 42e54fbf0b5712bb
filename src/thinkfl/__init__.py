"""ThinkFL: self-refining failure localization for microservice systems."""

__version__ = "0.1.0"
