"""The rows that flow between the stages, the two output tables, and the error kinds: each declared once.

    listed input ─► read ─► DOCUMENT ─► split ─► PAGE ─► requests ─► REQUEST ─► engine ─► ENGINE_OUTPUT
                 ─► answers ─► PAGE_TABLE (written as the job runs) ─► commit ─► DOCUMENT_TABLE

Every stage builds its rows with `Shape.row(...)` and its Ray blocks with `Shape.table(...)`: a key
left out is null, a key the shape does not declare is an error, so no stage can add, drop or rename a
column on its own; and the blocks carry a fixed Arrow type, never one Ray guessed from a batch that
happened to be all null. A newcomer finds where any output column comes from by reading its
declaration here and searching for its name.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable

import pyarrow as pa


class ErrorKind(str, enum.Enum):
    """`error_kind` of a row; null on success. The README's list is checked against this one.
    `blank_page` is no failure: the page has nothing to read (pipeline/ingest/blank.py), so the
    engine was not asked; its rows carry their questions and no answer, and they do not vote."""

    NOT_FOUND = "not_found"
    READ_ERROR = "read_error"
    NOT_A_FILE = "not_a_file"
    BAD_FILE_NAME = "bad_file_name"
    FILE_TOO_LARGE = "file_too_large"
    PATH_NOT_ALLOWED = "path_not_allowed"
    EMPTY_FILE = "empty_file"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT_PDF = "corrupt_pdf"
    CORRUPT_IMAGE = "corrupt_image"
    ENCRYPTED_PDF = "encrypted_pdf"
    NO_PAGES = "no_pages"
    PAGE_LIMIT = "page_limit"
    TOO_MANY_PIXELS = "too_many_pixels"
    BAD_PAGE_SIZE = "bad_page_size"
    RENDER_ERROR = "render_error"
    RENDER_TIMEOUT = "render_timeout"
    RENDER_CRASH = "render_crash"
    SPLIT_ERROR = "split_error"
    BLANK_PAGE = "blank_page"
    CONTEXT_EXCEEDED = "context_exceeded"
    NO_QUESTION = "no_question"
    ENGINE_ERROR = "engine_error"
    ENGINE_CRASH = "engine_crash"
    INVALID_OUTPUT = "invalid_output"
    OUTPUT_TRUNCATED = "output_truncated"
    NOT_PROCESSED = "not_processed"
    SKIPPED_UNCHANGED = "skipped_unchanged"

    def __str__(self) -> str:  # f-strings and Arrow columns get the plain value
        return self.value


# Failures worth another try on the same content: --incremental redoes documents with these.
TRANSIENT = frozenset({ErrorKind.READ_ERROR, ErrorKind.RENDER_CRASH, ErrorKind.ENGINE_ERROR,
                       ErrorKind.ENGINE_CRASH, ErrorKind.NOT_PROCESSED})


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool
    description: str

    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable, metadata={"description": self.description})


class Shape:
    """An ordered set of columns: the schema of one kind of row."""

    def __init__(self, name: str, columns: Iterable[Column]):
        self.name = name
        self.columns = tuple(columns)
        self.names = tuple(c.name for c in self.columns)
        self._names = frozenset(self.names)
        if len(self._names) != len(self.names):
            raise ValueError(f"{name}: duplicate column")
        self.schema = pa.schema([c.field() for c in self.columns])

    def row(self, base: dict[str, Any] | None = None, **values: Any) -> dict[str, Any]:
        """A row of this shape: `base`'s keys of this shape, then `values`; the rest null."""
        unknown = set(values) - self._names
        if unknown:
            raise KeyError(f"{self.name} has no column(s) {sorted(unknown)}")
        out = {name: None for name in self.names}
        if base:
            out.update((k, v) for k, v in base.items() if k in self._names)
        out.update(values)
        return out

    def table(self, rows: list[dict[str, Any]]) -> pa.Table:
        return pa.Table.from_pylist([self.row(r) for r in rows], schema=self.schema)

    def empty(self) -> pa.Table:
        return self.schema.empty_table()

    def extend(self, name: str, columns: Iterable[Column], drop: Iterable[str] = ()) -> "Shape":
        """This shape without `drop`, with `columns` appended."""
        dropped = set(drop)
        return Shape(name, [c for c in self.columns if c.name not in dropped] + list(columns))

    def nullable(self) -> "Shape":
        """The same columns, all nullable (for internal rows that carry several kinds of row)."""
        return Shape(self.name, [Column(c.name, c.type, True, c.description) for c in self.columns])

    def document(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "type": str(c.type), "nullable": c.nullable, "description": c.description}
                for c in self.columns]


def _c(name: str, typ: pa.DataType, description: str, nullable: bool = True) -> Column:
    return Column(name, typ, nullable, description)


# Words of a page's text layer with their boxes, as parallel lists (grounding.words_to_columns).
WORDS = pa.struct([("text", pa.list_(pa.string())), ("x0", pa.list_(pa.float32())), ("y0", pa.list_(pa.float32())),
                   ("x1", pa.list_(pa.float32())), ("y1", pa.list_(pa.float32())), ("line", pa.list_(pa.int32()))])
BOX = pa.struct([("x0", pa.float32()), ("y0", pa.float32()), ("x1", pa.float32()), ("y1", pa.float32())])
BOXES = pa.list_(BOX)

# ---- inside the job ---------------------------------------------------------------------------

# One listed input: what discovery knows before anything is read.
LISTED = Shape("listed", [
    _c("source_uri", pa.string(), "Where the document is read from.", nullable=False),
    _c("questions", pa.list_(pa.string()), "Questions from the manifest for this document (empty: the job's)."),
    _c("size_bytes", pa.int64(), "Size when listed."),
    _c("mtime_ns", pa.int64(), "Modification time when listed (ns since the epoch)."),
    _c("error_kind", pa.string(), "Set when listing already knows it is bad (e.g. outside the allowed roots)."),
    _c("error", pa.string(), "Why."),
])

# What a resumed or incremental run already has for a document (resume.py fills it).
DONE_PAGES = _c("done_pages", pa.list_(pa.int32()), "Pages this run already wrote (--resume): not redone.")
DOC_ROW_DONE = _c("doc_row_done", pa.bool_(), "The run already wrote this document's document-level row.")

DOCUMENT = Shape("document", [
    *LISTED.columns, DONE_PAGES, DOC_ROW_DONE,
    _c("doc_id", pa.string(), "sha256 of the bytes (32 hex chars); 'uri:...' when they could not be read."),
    _c("data", pa.binary(), "The document's bytes (null once it failed)."),
])

PAGE = Shape("page", [
    _c("doc_id", pa.string(), "Document id.", nullable=False),
    _c("source_uri", pa.string(), "Where the document was read from.", nullable=False),
    _c("questions", pa.list_(pa.string()), "The document's own questions."),
    _c("page_index", pa.int32(), "0-based page or frame; null for a row about the whole document."),
    _c("page_count", pa.int32(), "Pages in the document, when known."),
    _c("width", pa.int32(), "Width in pixels of the image the model sees."),
    _c("height", pa.int32(), "Height in pixels of the image the model sees."),
    _c("image", pa.binary(), "PNG or JPEG bytes of the rendered page."),
    _c("text", pa.string(), "The PDF's text layer of the page (null for images)."),
    _c("words", WORDS, "Words of the text layer with their boxes, normalised to [0, 1] (null: no text layer)."),
    _c("doc_format", pa.string(), "Format detected from the bytes: pdf, png, jpeg, tiff, ..."),
    _c("render_s", pa.float64(), "Seconds spent rendering the page."),
    _c("rendered_at", pa.float64(), "When the split stage handed the page on (epoch seconds; feeding.py)."),
    _c("error_kind", pa.string(), "Why the page (or document) has no image; blank_page: it has nothing to read."),
    _c("error", pa.string(), "Human-readable error message."),
])

# One engine request: the instruction after the image, its JSON Schema and the questions it answers.
PROMPT = pa.struct([("instruction", pa.string()), ("schema_json", pa.string()),
                    ("questions", pa.list_(pa.string())), ("max_tokens", pa.int32()),
                    ("retry_max_tokens", pa.int32())])

REQUEST = PAGE.extend("request", drop=("image", "text", "questions"), columns=[
    _c("image_url", pa.string(), "The page image as a data URL, as the engine takes it."),
    _c("prompts", pa.list_(PROMPT), "The page's engine requests (one per question, or one for all)."),
    _c("questions_unasked", pa.list_(pa.string()), "A page with nothing to read (blank_page): the questions it "
       "would have been asked, each a row without an answer (no engine request)."),
    _c("task", pa.string(), "Task name."),
    _c("prompt_version", pa.string(), "Prompt template version."),
])

# What the engine made of one request. Token columns add up every attempt (a retry costs tokens too).
OUTPUT = pa.struct([
    ("raw_output", pa.string()), ("finish_reason", pa.string()), ("attempts", pa.int8()),
    ("prompt_tokens", pa.int32()), ("output_tokens", pa.int32()), ("latency_s", pa.float64()),
    ("error_kind", pa.string()), ("error", pa.string()),
    ("token_texts", pa.list_(pa.string())), ("token_logprobs", pa.list_(pa.float32())),
])

ENGINE_OUTPUT = REQUEST.extend("engine_output", drop=("image_url",), columns=[
    _c("outputs", pa.list_(OUTPUT), "One per prompt, in order."),
    _c("model_id", pa.string(), "What the engine actor built and answered with (engine/model.py model_label): "
                                "the rows' model_id."),
])

# ---- the output tables -------------------------------------------------------------------------

RUN_ID = _c("run_id", pa.string(), "The run that wrote the row.", nullable=False)
MODEL_ID = _c("model_id", pa.string(), "Model path or hub id; random-weight models are labelled as such.",
              nullable=False)
PROMPT_VERSION = _c("prompt_version", pa.string(), "Prompt template version (prompts.PROMPT_VERSION/task-version).",
                    nullable=False)
CREATED_AT = _c("created_at", pa.timestamp("us", tz="UTC"), "When the row was produced.", nullable=False)
TYPED_ANSWER = [
    _c("answer_json", pa.string(), "The answer as JSON text, valid against the task schema; null if invalid."),
    _c("answer_text", pa.string(), "Typed view: the answer string, where the task has one."),
    _c("answer_number", pa.float64(), "Typed view: the numeric answer (a finite double), where the task has one."),
    _c("answer_unit", pa.string(), "Typed view: the unit of answer_number, where given."),
    _c("confidence", pa.float64(), "How likely the answer is right: token_confidence weighed against what the "
       "pipeline knows of the page (pipeline/answers/evidence.py), on the scale of answers.calibration when the "
       "job names one (README, Confidence); null without token log-probabilities."),
    _c("token_confidence", pa.float64(), "Joint probability the model gave to the tokens of the answer's value "
       "(the model's belief alone); null without token log-probabilities."),
    _c("needs_review", pa.bool_(), "True: a person should check this row (confidence under the job's review "
       "threshold, or no valid answer); null when the job has no threshold (answers.review_threshold or the "
       "calibration's)."),
    _c("answer_boxes", BOXES, "Where the answer is on the page: boxes normalised to [0, 1] of the page, one "
       "per line; null on pages without a text layer."),
    _c("grounded", pa.bool_(), "True: the answer was found in the page's text layer; False: the page has a "
       "text layer and the answer is not in it (check it); null: no text layer (scan, image)."),
]
VALUE_DETAILS = _c("value_details", pa.list_(pa.struct([
    ("path", pa.string()), ("confidence", pa.float64()), ("boxes", BOXES), ("grounded", pa.bool_())])),
    "Per value of the answer (each field of an extraction): its JSON path, token confidence, boxes, grounded.")

PAGE_TABLE = Shape("pages", [
    RUN_ID,
    _c("doc_id", pa.string(), "sha256 of the document bytes (32 hex chars); 'uri:...' if unreadable.", nullable=False),
    _c("source_uri", pa.string(), "Where the document was read from.", nullable=False),
    _c("page_index", pa.int32(), "0-based page (or TIFF frame); null for a row about the whole document."),
    _c("page_count", pa.int32(), "Pages in the document, when known."),
    _c("width", pa.int32(), "Width in pixels of the image the model saw."),
    _c("height", pa.int32(), "Height in pixels of the image the model saw."),
    _c("doc_format", pa.string(), "Format detected from the bytes: pdf, png, jpeg, tiff, ..."),
    _c("task", pa.string(), "Task name (docvqa, ...).", nullable=False),
    _c("question", pa.string(), "The question asked (of a blank_page page: not asked, no answer); null for "
       "tasks without one and for failed pages."),
    *TYPED_ANSWER,
    VALUE_DETAILS,
    _c("raw_output", pa.string(), "What the engine returned on the last attempt, verbatim (the whole array when "
       "asked together)."),
    _c("request_questions", pa.int16(), "Questions answered by the engine request of this row; its token counts "
       "are that request's."),
    _c("valid", pa.bool_(), "True when answer_json is valid for the task schema.", nullable=False),
    _c("error_kind", pa.string(), "Null on success; else one of the error kinds (README). blank_page: the page "
       "has nothing to read and the engine was not asked: no failure."),
    _c("error", pa.string(), "Human-readable error message."),
    _c("finish_reason", pa.string(), "vLLM's finish reason of the last attempt (stop, length)."),
    _c("attempts", pa.int8(), "Engine attempts for this row (0 if it never reached the engine).", nullable=False),
    MODEL_ID, PROMPT_VERSION,
    _c("prompt_tokens", pa.int32(), "Prompt tokens, image included, summed over every attempt."),
    _c("output_tokens", pa.int32(), "Generated tokens, summed over every attempt."),
    _c("latency_s", pa.float64(), "Seconds from the request entering the engine to its answer (last attempt)."),
    _c("render_s", pa.float64(), "Seconds spent rendering the page."),
    CREATED_AT,
])

# The fixed columns of the document table; a `fields` run adds one typed column per schema property
# after them (pipeline/tasks/typed_fields.py), so property names may not collide with these.
DOCUMENT_TABLE = Shape("documents", [
    RUN_ID,
    _c("doc_id", pa.string(), "Document id.", nullable=False),
    _c("source_uri", pa.string(), "Where the document was read from.", nullable=False),
    _c("task", pa.string(), "Task name.", nullable=False),
    _c("question", pa.string(), "The question (null for tasks without one: fields, classify)."),
    _c("status", pa.string(), "ok: every page answered (blank pages aside); partial: some pages failed; failed: "
       "no page answered (error_kinds says why; blank_page alone: no page had anything to read); "
       "skipped_unchanged: a committed run already answered it (see error).", nullable=False),
    *TYPED_ANSWER,
    _c("page_index", pa.int32(), "The page the document's answer comes from (the earliest that gives it)."),
    _c("pages_agreeing", pa.int32(), "Pages that gave this answer."),
    _c("pages_answered", pa.int32(), "Pages with a valid, non-empty answer to this question."),
    _c("page_count", pa.int32(), "Pages in the document, when known."),
    _c("field_errors", pa.map_(pa.string(), pa.string()), "fields: value that did not convert to its column's "
       "type -> why (that column is null)."),
    _c("field_details", pa.list_(pa.struct([
        ("field", pa.string()), ("confidence", pa.float64()), ("page_index", pa.int32()), ("boxes", BOXES),
        ("grounded", pa.bool_()), ("pages_agreeing", pa.int32())])),
       "fields: per top-level field, where its value comes from and how sure the model was."),
    _c("needs_review_rows", pa.int32(), "Page rows behind this row that need a person's check (needs_review); "
       "null when the job has no review threshold."),
    _c("error_kinds", pa.list_(pa.string()), "Error kinds among the document's rows for this question."),
    _c("error", pa.string(), "The first error message among them."),
    MODEL_ID, PROMPT_VERSION, CREATED_AT,
])

# One row per listed document, in the run's record (not a table analysts read).
MANIFEST = Shape("manifest", [
    _c("source_uri", pa.string(), "Where the document was read from.", nullable=False),
    _c("doc_id", pa.string(), "Document id."),
    _c("job_key", pa.string(), "What the document was asked (task, questions, model, prompts, rendering): "
       "--incremental skips only a document done with the same key."),
    _c("pages", pa.int32(), "Pages with rows."),
    _c("page_count", pa.int32(), "Pages in the document."),
    _c("cut_at", pa.int32(), "render.max_pages when the document was cut by it, else null."),
    _c("rows", pa.int32(), "Rows in the page table."),
    _c("valid_rows", pa.int32(), "Valid rows."),
    _c("status", pa.string(), "ok, failed (only lasting errors), retry (a transient error: --incremental "
       "redoes it), skipped_unchanged.", nullable=False),
    _c("error_kinds", pa.list_(pa.string()), "Error kinds among its rows."),
])

