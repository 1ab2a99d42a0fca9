"""The benchmark cases now live in the installed package (``tritorch.benchmark``); this name is kept for the scripts
and pytest-benchmark files of bench/."""
from tritorch.benchmark import CASES, HOST_COST, Case, Missing, get_case, make_case, make_input, resolve  # noqa: F401

__all__ = ["Case", "Missing", "CASES", "HOST_COST", "get_case", "make_case", "make_input", "resolve"]
