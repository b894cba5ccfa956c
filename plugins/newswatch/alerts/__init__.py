"""Alerts: rules matched against new stories (alerting), then messages sent through one outbox (outbox,
delivery, operator_events, notify). Empty on purpose: a task imports only the modules it uses."""
