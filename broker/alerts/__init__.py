"""Alerts (docs/alerts.md): opening hours, the rules, what notices say, how they are delivered, the engine.

    hours      a site's opening hours and closed days; "is it open at t", open seconds in a span (pure)
    rules      facts and an instant in, the conditions that hold out; which alerts to open and resolve (pure)
    messages   the title and text of an alert, Vietnamese first and English
    channels   one notice over SMTP or a signed webhook POST
    settings   the config's [alerts], [email] and [webhook] keys
    engine     the service's checker and sender threads, over the store's alerts and outbox

The store's side is broker/store/alerts*.py; the API's broker/api/alerts.py; the page
broker/web/pages/alerts.py.
"""
