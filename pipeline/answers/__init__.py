"""From the engine's text to page-table rows: validation and typed columns (answers), confidence from
log-probabilities (confidence), and where on the page an answer is (grounding)."""
