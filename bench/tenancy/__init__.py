"""The multi-tenant benchmark on real workers; ``bench/multitenant.py`` is its command.

``workload`` builds the tenants' records and workflow, ``training`` those of the training
stage (``--stages training``); ``workers`` starts and stops the worker processes;
``fabric`` runs a control plane and switches workers on and off; ``variants`` runs and
measures one variant, ``oracle`` the unique work alone; ``session`` runs them all after
the warm-up; ``report`` prints and writes the figures; ``options`` and ``cli`` are the
command line.
"""
