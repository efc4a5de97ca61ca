"""The one-screen summary of a run, computed from the Parquet it wrote (not from counters that
could disagree with the files)."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.config import JobSpec


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
    failures: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(asdict(self), pages_per_s=round(self.pages_per_s, 4))

    def render(self) -> str:
        lines = [
            f"run {self.run_id}  task={self.task}  engine on {self.device}",
            f"  model      {self.model}",
            f"  documents  {self.documents} (listed {self.documents_listed}, skipped as unchanged "
            f"{self.skipped_unchanged})",
            f"  pages      {self.pages}",
            f"  rows       {self.rows}  valid {self.valid_rows}  failed {self.rows - self.valid_rows}",
        ]
        if self.failures:
            kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.failures.items(), key=lambda kv: -kv[1]))
            lines.append(f"  failures   {kinds}")
        lines += [
            f"  tokens     prompt {self.prompt_tokens}  output {self.output_tokens}",
            f"  time       {self.seconds:.1f} s  ({self.pages_per_s:.2f} pages/s, start-up included)",
            f"  output     {self.output}",
        ]
        return "\n".join(lines)


def summarize(spec: JobSpec, run_path: str, listed: int, seconds: float, device: str,
              rows: list[dict[str, Any]]) -> RunSummary:
    """The summary of a run from its rows (source_uri, page_index, valid, error_kind, token counts)."""
    from pipeline.engine import model_label

    # Counted by source, not content: two copies of one file are two documents of the input.
    pages = {(r["source_uri"], r["page_index"]) for r in rows if r["page_index"] is not None}
    # Rows answered by one request share its token counts: count them once per request.
    share = [1 / (r["request_questions"] or 1) for r in rows]
    skipped = {r["source_uri"] for r in rows if r["error_kind"] == "skipped_unchanged"}
    return RunSummary(
        run_id=spec.output.run_id,
        output=run_path,
        task=spec.task.name,
        model=model_label(spec.engine),
        device=device,
        documents_listed=listed,
        documents=len({r["source_uri"] for r in rows}) - len(skipped),
        skipped_unchanged=len(skipped),
        pages=len(pages),
        rows=len(rows) - len(skipped),
        valid_rows=sum(1 for r in rows if r["valid"]),
        failures=dict(Counter(r["error_kind"] for r in rows
                              if r["error_kind"] and r["error_kind"] != "skipped_unchanged")),
        prompt_tokens=round(sum((r["prompt_tokens"] or 0) * w for r, w in zip(rows, share))),
        output_tokens=round(sum((r["output_tokens"] or 0) * w for r, w in zip(rows, share))),
        seconds=round(seconds, 3),
    )
