"""Reporting: the study's tables, figures and the Markdown/HTML report, from eval results."""
