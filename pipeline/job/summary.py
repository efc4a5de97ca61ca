"""The one-screen summary of a run, read from its _SUCCESS marker (counts the commit summed from
the run's own rows, never from counters that could disagree with the files)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pipeline.core.rows import ErrorKind as E


@dataclass
class RunSummary:
    run_id: str
    output: str
    task: str
    model: str
    device: str
    documents_listed: int
    documents: int
    pages: int
    skipped_unchanged: int
    rows: int
    valid_rows: int
    failures: dict[str, int] = field(default_factory=dict)  # error kind -> rows; blank_page rows are no failure
    blank_pages: int = 0  # pages with nothing to read: not asked (pipeline/ingest/blank.py)
    blank_rows: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    log_file: str | None = None

    @classmethod
    def from_marker(cls, marker: dict[str, Any]) -> "RunSummary":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in marker.items() if k in names})

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> int:
        return self.failures.get(E.NOT_PROCESSED.value, 0)

    def as_dict(self) -> dict[str, Any]:
        return dict(asdict(self), pages_per_s=round(self.pages_per_s, 4))

    def render(self) -> str:
        blank_pages = f"  ({self.blank_pages} with nothing to read: not asked)" if self.blank_pages else ""
        blank_rows = f"  blank {self.blank_rows}" if self.blank_rows else ""
        lines = [
            f"run {self.run_id}  task={self.task}  engine on {self.device}",
            f"  model      {self.model}",
            f"  documents  {self.documents} (listed {self.documents_listed}, skipped as unchanged "
            f"{self.skipped_unchanged})",
            f"  pages      {self.pages}{blank_pages}",
            f"  rows       {self.rows}  valid {self.valid_rows}{blank_rows}  "
            f"failed {self.rows - self.valid_rows - self.blank_rows}",
        ]
        if self.failures:
            kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.failures.items(), key=lambda kv: -kv[1]))
            lines.append(f"  failures   {kinds}")
        lines += [
            f"  tokens     prompt {self.prompt_tokens}  output {self.output_tokens}",
            f"  time       {self.seconds:.1f} s  ({self.pages_per_s:.2f} pages/s, start-up included)",
            f"  output     {self.output}",
        ]
        if self.log_file:
            lines.append(f"  logs       {self.log_file}")
        return "\n".join(lines)
