"""The smallest typer application: the baseline for the CLI start-up benchmark."""

import typer

app = typer.Typer(add_completion=False)


@app.command()
def hello() -> None:
    """Print one line."""
    typer.echo("hello")


if __name__ == "__main__":
    app()
