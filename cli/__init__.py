"""The command line: `patrol` (app.py) and its commands, one module per concern (commands/)."""
