"""Iterative centre-shift indexing (ICI). No Prefect here.

``model`` (records), ``events`` (which events a run processes), ``loop`` (the next run's jobs),
``runner`` (runs the jobs), and the packages ``proposer``, ``runroot``, ``backends``, ``report``
and ``synthetic``.
"""
