"""Storage: URIs and retries (storage, retrying), whole files (fileio), the output folder's layout and run
record (layout), the reader API (output, schema_files), and the stage that writes answered pages (writer)."""
