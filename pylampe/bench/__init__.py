"""``pylampe bench``: prefill and decode speed and memory of long-context methods, each in its own process."""

from .measure import Measurement, measure
from .table import table

__all__ = ["Measurement", "measure", "table"]
