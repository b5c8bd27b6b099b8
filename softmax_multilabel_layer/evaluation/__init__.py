"""Evaluation: multi-label metrics (numpy), decision rules, reading trained nets, and the ``evaluate``,
``predict`` and ``deploy`` commands."""
