"""The explorer: a run folder (``run.py``) served as a web app (``app.py``) or exported as a
static site (``export.py``); one front end (``static/``) for both."""
