"""Stage 4, analysis: statistics, inference, tables, plots, reports and calibration of the verdicts."""
