"""Security response: alert sources, alerts, incidents, containment, rectification (issue 4)."""
