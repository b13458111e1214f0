"""Evaluation of trained runs: test metrics and their files, predictions for new files, reports, figures."""
