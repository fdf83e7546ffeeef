"""Example post script: record the outcome in the order's log attributes."""


def process(attributes):
    """Runs after mark_sent, or after a failure (run_on_failure: true)."""
    if attributes.get("failed") == "true":
        attributes["log.outcome"] = "failed at " + attributes.get("failure.stage", "?")
    else:
        attributes["log.outcome"] = "sent as " + attributes.get("erp.reference", "?")
