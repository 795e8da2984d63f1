"""Progress bars for self-supervised runs (rich, on stderr; a no-op when disabled)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class _Bars:
    def __init__(self, progress) -> None:
        self.progress = progress

    def training(self, steps: int | None, budget_s: float | None) -> Callable | None:
        """Callback ``(done, steps, fraction, loss)`` advancing a 'training' bar."""
        if self.progress is None:
            return None
        task = self.progress.add_task("selfsup: training", total=1000, info="")

        def advance(done: int, steps: int | None, frac: float, loss: float) -> None:
            if done % 10 == 0 or frac >= 1.0:
                info = f"step {done}" + (f"/{steps}" if steps else "") + f"  L1 {loss:.4f}"
                self.progress.update(
                    task, completed=min(1000, int(1000 * max(frac, done / (steps or 1e12)))), info=info
                )

        return advance

    def inference(self, planes: int) -> Callable | None:
        """Callback ``(n)`` advancing an 'inference' bar by n planes."""
        if self.progress is None:
            return None
        task = self.progress.add_task("selfsup: inference", total=planes, info="planes")
        return lambda n: self.progress.advance(task, n)


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[_Bars]:
    """Yield an object whose ``training``/``inference`` methods return callbacks (None when disabled)."""
    if not enabled:
        yield _Bars(None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield _Bars(progress)
