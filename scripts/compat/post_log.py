# Post script in the simple compat form: record the outcome; the content is not used.
if get_attribute("failed") == "true":
    session.putAttribute("log.outcome", "failed at " + (get_attribute("failure.stage") or "?"))
else:
    session.putAttribute("log.outcome", "sent as " + (get_attribute("erp.reference") or "?"))
