"""The HTML report: a self-contained folder to browse an evaluation's images with their ground truth,
detections and error kinds (``maskrcnn report``), or a dataset's (``maskrcnn inspect data --html``).

:mod:`~maskrcnn.engine.viewer.records` (what is shown of each image), :mod:`.pictures` (thumbnails and
viewing copies), :mod:`.sections` (the summary above the grid), :mod:`.site` (the folder),
:mod:`.build` (the two reports); ``assets/`` holds the page's script and style.
"""

from maskrcnn.engine.viewer.build import (
    EvaluationFiles,
    dataset_report,
    evaluation_report,
    read_evaluation,
    read_log,
)

__all__ = ["EvaluationFiles", "dataset_report", "evaluation_report", "read_evaluation", "read_log"]
