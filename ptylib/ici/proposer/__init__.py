"""The ICI proposer: from an event's runs to its next detector shift (mm) or DONE.

``options`` (every knob), ``policy`` (dispatch and the seed's hillmap switching), ``hillmap``
(Step-1 draws), ``dxdy`` (Step-2 files), ``centre_model`` / ``centre_fit`` (the model policy),
``baselines`` (spiral, random), ``rng`` (per-event streams), ``done`` (DONE rules) and ``propose``
(one proposing pass over a run root).
"""
