"""Blob withholding: a test set stays private until its task is released.

The data node uploads its test set just before the release; if the node served it earlier,
late miners could train on the test set and still announce. Withholding is keyed by the
test-set commitment, which any poster may copy into a task of their own, so the rule is
about the commitment, not one task: a test set is withheld while an open task names it and
no task with that commitment has been released. A copycat task cannot keep a victim's
released test set hidden.
"""
from __future__ import annotations

from pole_chain.node.solution_book import SolutionBook
from pole_chain.node.task_views import TaskViews


class BlobWithholding:
    """Decides which stored blobs pole_getBlob must not serve yet."""

    def __init__(self, tasks: TaskViews, solutions: SolutionBook) -> None:
        self._tasks = tasks
        self._solutions = solutions

    def withheld(self, digest: bytes) -> bool:
        """A test set named by an open task whose commitment no release has made public."""
        digest = bytes(digest)
        if digest not in self._tasks.open_digests().test_sets:
            return False
        return not self._solutions.is_test_set_released(digest)
