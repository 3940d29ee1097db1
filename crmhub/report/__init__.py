"""Support metrics from the state store (issue 16): figures, their renderings and business time."""

from crmhub.report.figures import DIMENSIONS, FIGURES, Report, compute

__all__ = ["DIMENSIONS", "FIGURES", "Report", "compute"]
