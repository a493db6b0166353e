"""The name a task shows in the scheduler's web view: ``produit.MergeOds``, the table first.

What luigid's visualiser (luigi 3.8.1) renders for a node is the task's *family*: both graphs (``graph.js`` and the
D3 one in ``visualiserApp.js``) label a node with its ``name``, which ``scheduler._serialize_task`` fills with
the family the worker reported in ``add_task(family=task.task_family)``; the task list's Name column is the
same field.  ``display_name`` (``Task.pretty_id``: family and public parameters) is only the title of the graph's
root (``_traverse_graph`` drops it from every other node) and a line of the Workers tab; the parameters
themselves only show on hover.  So ``MergeOds`` five times said nothing about which table is which.

How the table gets into that name, and why this way:

* Luigi's own knob is ``task_namespace``, but it is per class: one class per table, built at run time, would
  fill the task registry, and the family is the first part of the task id (``task_id_str(get_task_family(),
  params)``), so every task id would change.  A display parameter would change the ids too, and grow them.
* Instead the tasks override ``Task.task_family``, the instance property the worker reads each time it sends a
  task to the scheduler, and leave the class method ``get_task_family()`` alone.  Everything that identifies a
  task reads the class method: the task id (``MergeOds_2026_11_25_full_produit_<hash>``, unchanged), ``repr``
  (``MergeOds(batch_id=2026-11-25, mode=full, table=produit)``), the ``luigi`` command's task name and the
  ``[MergeOds]`` section of luigi.cfg.  Only what the scheduler shows, and Luigi's own e-mails and run summary,
  use the labelled family (the summary, grouped by family, then lists one line per table and step, up to
  ``[execution_summary] summary_length`` lines, 5 by default, then ``...``; its counts stay complete).
* ``<table>.<Step>`` is Luigi's namespace notation: the visualiser's sidebar groups families by what precedes
  the first dot, so each table's steps are listed together under the table.

The price: a worker that must rebuild a task from its family alone (``luigi --assistant``, dependencies yielded
from ``run()``, batched tasks) would not find ``produit.MergeOds`` in the registry.  None of these is used here:
every worker runs only the tasks it scheduled itself, which it keeps as objects.
"""

from __future__ import annotations

import luigi


def table_family(task_cls: type[luigi.Task], table: str) -> str:
    """The family the scheduler shows for a task of ``task_cls`` on ``table``: ``produit.MergeOds``."""
    family = task_cls.get_task_family()
    return f"{table}.{family}" if table else family
