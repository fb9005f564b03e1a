"""CLI commands, one module per concern; ``register`` wires them into ``patrol``."""


def register(app, run_app) -> None:
    """Add the commands of this package to the top-level app and the ``run`` group."""
    from .demo import demo
    from .detect import detect
    from .generate import generate
    from .ingest import ingest
    from .label import label_app
    from .models import models_app
    from .preagg import preagg

    app.command("demo")(demo)
    app.command("generate")(generate)
    app.command("ingest")(ingest)
    run_app.command("preagg")(preagg)
    run_app.command("detect")(detect)
    app.add_typer(label_app, name="label")
    app.add_typer(models_app, name="models")
