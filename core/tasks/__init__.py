"""Tasks: what a model's outputs mean and how it is trained, scored and applied (one module per task).

Each module registers a :class:`TaskSpec` (:func:`register_task`); :func:`get_task` / :func:`list_tasks` import every
module of the package first (``pkgutil``), so a new task is one new file.
"""

from __future__ import annotations

from core.tasks.api import TaskSpec, get_task, list_tasks, register_task

__all__ = ["TaskSpec", "get_task", "list_tasks", "register_task"]
