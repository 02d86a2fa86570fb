"""``models`` and ``schemes``: what a train or pipeline config may name (the model and scheme registries)."""

from __future__ import annotations

import argparse
from typing import Any

from jobs.cli.output import print_json, table


def cmd_schemes(args: argparse.Namespace) -> int:
    """Print the parallelism schemes a train or pipeline config may name (the scheme registry)."""
    from core.training.schemes import get_scheme, list_schemes

    for name in list_schemes():
        spec = get_scheme(name)
        print(f"{name:<16} {'horovod' if spec.uses_horovod else 'single ':<8} {spec.description}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """The registered models: name, task, the modality it reads, size parameters with defaults and ranges."""
    from core.models import get_model, list_models
    from core.tasks import get_task

    if args.task is not None:
        get_task(args.task)  # ConfigError naming the registered tasks
    specs = [get_model(m) for m in list_models(args.task)]
    if args.json:
        print_json(
            [
                {
                    "name": s.name,
                    "task": s.task,
                    "modality": s.modality,
                    "branches": list(s.branches),
                    "recipe": s.recipe.name if s.recipe else None,
                    "description": s.description,
                    "params": [
                        {"name": p.name, "label": p.label, "default": p.default, "low": p.low, "high": p.high}
                        for p in s.params
                    ],
                }
                for s in specs
            ]
        )
        return 0
    rows = [
        {
            "model": s.name,
            "task": s.task,
            "modality": s.modality or "all",
            "params": ", ".join(f"{p.name}={p.default!r} [{p.low:g}..{p.high:g}]" for p in s.params) or "-",
            "description": s.description,
        }
        for s in specs
    ]
    print(table(rows, ["model", "task", "modality", "params", "description"]))
    return 0


def add_parsers(sub: Any) -> None:
    models = sub.add_parser("models", help="list the models a train or pipeline config may name")
    models.add_argument("--task", help="only the models of this task (dense, patch, multilabel, ...)")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=cmd_models)
    sub.add_parser("schemes", help="list the parallelism schemes (scheme of a train config)").set_defaults(
        func=cmd_schemes
    )
