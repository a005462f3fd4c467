"""Deployments of the flows: schedules, triggers and work pools."""
