"""Results as people read them: Markdown tables, PNG plots, and the run report.

``markdown`` and ``plots`` are the one table writer and the one figure set-up every stage uses
(they import only pandas and matplotlib); ``run_report`` writes a pipeline run's report from its
stages' JSON results.
"""
