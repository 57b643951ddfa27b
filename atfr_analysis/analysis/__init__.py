"""Analysis of a profiling log (pure pandas): per-video and per-class tables, the class ranking of
the poster, paper-style tables, figures and a Markdown report.

    from atfr_analysis import load_run
    from atfr_analysis.analysis import RunAnalysis, per_class, ranking, paper_table, write_report
    log = load_run("runs/x3d_s_atfr")
    run = RunAnalysis(log)                 # checked and prepared once; every function takes it or a log
    per_class(log)                         # one row per class + "overall" (top-1, top-5, mean class)
    ranking(log, by="bins", k=5)           # lowest / highest classes with bootstrap CIs
    confusion_matrix(log, ensemble="max")  # views combined by their maximum instead of their sum
    write_report(log, "reports/x3d", baseline=load_run("runs/x3d_s"))
    export_predictions(log, "results.pkl", format="pyslowfast")

Bad input raises :class:`AnalysisError` (an ``AtfrError`` and a ``ValueError``) with a one-line
message; a baseline that covers other videos, classes or views raises
:class:`IncomparableRunsError`. The figure functions (``plot_*``) import matplotlib only when
called.
"""

from atfr_analysis.analysis.aggregate import (
    ENSEMBLES,
    AnalysisError,
    bins_layers,
    mean_class_accuracy,
    num_bins,
    per_class,
    video_table,
)
from atfr_analysis.analysis.comparable import IncomparableRunsError, check_comparable, differences
from atfr_analysis.analysis.confusion import confusion_matrix, most_confused_pairs
from atfr_analysis.analysis.export import EXPORT_FORMATS, export_predictions
from atfr_analysis.analysis.ranking import RANK_BY, RankingSpec, below_min_videos, class_values, rank_classes, ranking
from atfr_analysis.analysis.report import ReportConfig, make_report, write_report
from atfr_analysis.analysis.run_analysis import INCOMPLETE, IncompleteRunError, RunAnalysis
from atfr_analysis.analysis.tables import (
    TableConfig,
    accuracy_vs_views,
    accuracy_vs_views_both,
    format_paper_table,
    markdown_table,
    paper_table,
    to_csv,
    to_latex,
    to_markdown,
    write_paper_table,
)
from atfr_analysis.analysis.tradeoff import accuracy_by_bins, class_tradeoff, paired_videos
from atfr_analysis.lazy import lazy_exports

__all__ = [
    "RunAnalysis",
    "IncompleteRunError",
    "INCOMPLETE",
    "RankingSpec",
    "rank_classes",
    "ReportConfig",
    "TableConfig",
    "make_report",
    "AnalysisError",
    "IncomparableRunsError",
    "ENSEMBLES",
    "RANK_BY",
    "EXPORT_FORMATS",
    "check_comparable",
    "differences",
    "confusion_matrix",
    "most_confused_pairs",
    "class_tradeoff",
    "accuracy_by_bins",
    "paired_videos",
    "export_predictions",
    "video_table",
    "per_class",
    "mean_class_accuracy",
    "bins_layers",
    "num_bins",
    "ranking",
    "class_values",
    "below_min_videos",
    "paper_table",
    "format_paper_table",
    "markdown_table",
    "to_markdown",
    "to_csv",
    "to_latex",
    "write_paper_table",
    "accuracy_vs_views",
    "accuracy_vs_views_both",
    "write_report",
    "plot_confusion",
    "plot_accuracy_by_bins",
    "plot_bins_hist",
    "plot_class_distributions",
    "plot_gmacs_vs_accuracy",
    "plot_gmacs_distribution",
    "plot_accuracy_vs_views",
    "plot_delta_vs_reduction",
]

# figures load matplotlib / seaborn on first use
__getattr__ = lazy_exports(__name__, {n: "plots" for n in __all__ if n.startswith("plot_")})
